"""RFT data rules in the validator: each error on its line; SFT's assistant rules switched off for RFT."""

from __future__ import annotations

import json
from typing import Any

from shared.validation import ValidationOptions, validate

RFT = ValidationOptions(method="reinforcement", grader_fields=(("answer",), ("meta", "unit")))


def example(i: int, **change: Any) -> dict[str, Any]:
    ex: dict[str, Any] = {"messages": [{"role": "developer", "content": "Answer with the number."},
                                       {"role": "user", "content": f"How many wheels have {i} bicycles?"}],
                          "answer": str(2 * i), "meta": {"unit": "wheels"}}
    ex.update(change)
    return ex


def data(examples: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(e) for e in examples) + "\n").encode()


def test_valid_rft_data_has_no_sft_complaints() -> None:
    report = validate(data([example(i) for i in range(12)]), model="o4-mini-2025-04-16", options=RFT)
    assert report.valid and report.error_count == 0
    assert not {w.code for w in report.warnings} & {"unrecognized_key", "ends_without_assistant", "no_system_message"}
    assert report.tokens is not None and report.tokens.total > 0  # still counted and priced


def test_each_rft_rule_is_an_error_on_its_line() -> None:
    examples = [example(i) for i in range(12)]
    examples[2]["messages"].append({"role": "assistant", "content": "4"})  # line 3: a reply at the end
    examples[4]["messages"].insert(0, {"role": "system", "content": "You count."})  # line 5
    del examples[6]["answer"]  # line 7
    examples[8]["meta"] = {"units": "wheels"}  # line 9: the nested path is missing
    examples[9]["answer"] = None  # line 10: null is as good as missing
    report = validate(data(examples), model="o4-mini-2025-04-16", options=RFT)
    assert not report.valid
    assert [(e.code, e.line) for e in report.errors] == [
        ("rft_final_message_not_user", 3),
        ("rft_system_message", 5),
        ("rft_missing_grader_field", 7),
        ("rft_missing_grader_field", 9),
        ("rft_missing_grader_field", 10),
    ]
    assert "{{item.meta.unit}}" in report.errors[3].message


def test_the_validation_file_is_held_to_the_same_rules() -> None:
    valid = [example(i) for i in range(10)]
    del valid[3]["answer"]
    report = validate(data([example(i) for i in range(12)]), validation=data(valid), model="o4-mini-2025-04-16",
                      options=RFT)
    assert [(e.code, e.line, e.file) for e in report.errors] == [("rft_missing_grader_field", 4, "validation")]


def test_without_the_rft_method_the_same_data_is_sft_data_without_answers() -> None:
    report = validate(data([example(i) for i in range(12)]), model="o4-mini-2025-04-16")
    assert not report.valid and {e.code for e in report.errors} == {"no_assistant_message"}


def test_the_cli_checks_rft_data_against_a_grader_file(tmp_path: Any, capsys: Any) -> None:
    from shared.cli import main

    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps({"type": "string_check", "name": "exact", "operation": "eq",
                                  "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}))
    examples = [example(i) for i in range(12)]
    del examples[4]["answer"]
    train = tmp_path / "train.jsonl"
    train.write_bytes(data(examples))
    assert main(["validate", str(train), "--model", "o4-mini-2025-04-16", "--rft-grader", str(grader)]) == 1
    assert "line 5: [rft_missing_grader_field]" in capsys.readouterr().out
    grader.write_text('{"type": "python", "name": "p", "source": ""}')
    try:
        code = main(["validate", str(train), "--rft-grader", str(grader)])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2


def test_an_open_weight_model_is_validated_with_a_stated_assumption() -> None:
    from .examples import chat, jsonl

    report = validate(jsonl([chat(i) for i in range(12)]), model="Ministral-3B")
    assert report.valid
    assert [(w.code, w.line) for w in report.warnings if w.code == "unknown_model"] == [("unknown_model", None)]
    assert not validate(jsonl([chat(i) for i in range(12)]), model="Ministral-4B").valid  # a typo stays an error
