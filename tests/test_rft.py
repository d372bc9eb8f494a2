"""Reinforcement fine-tuning rules: graders, templates, calculate_output, hyperparameters, the spec, the method."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from shared import rft
from shared.metrics import parse_results, summarize
from shared.settings import Settings
from shared.spec import SpecError, build_spec, spec_warnings

O4 = "o4-mini-2025-04-16"
CHECK = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}"}


def spec_of(**metadata: str) -> Any:
    return build_spec(Settings(), metadata={"model": O4, **metadata})


def test_a_grader_in_metadata_makes_an_rft_spec_with_its_hyperparameters() -> None:
    spec = spec_of(rft_grader=json.dumps(CHECK), reasoning_effort="high", eval_samples="4", eval_interval="3",
                   compute_multiplier="2.5", n_epochs="2")
    assert spec.method == "reinforcement"
    assert spec.reinforcement is not None
    body = spec.reinforcement.method_body({"n_epochs": 2})
    assert body == {"type": "reinforcement", "reinforcement": {
        "grader": CHECK,
        "hyperparameters": {"n_epochs": 2, "eval_interval": 3, "eval_samples": 4, "compute_multiplier": 2.5,
                            "reasoning_effort": "high"}}}


@pytest.mark.parametrize(
    ("grader", "message"),
    [
        ({**CHECK, "type": "python", "source": "def grade(s, i): return 1"}, "does not match any of the expected tags"),
        ({**CHECK, "operation": "contains"}, "operation"),
        ({**CHECK, "reference": "{{answer}}"}, "must start with item. or sample."),
        ({**CHECK, "reference": "{{item.answers[0]}}"}, "no array indexing"),
        ({**CHECK, "input": "{{sample.text}}"}, "the sample namespace has output_text"),
        ({**CHECK, "extra": 1}, "extra"),
        ({"type": "text_similarity", "name": "s", "input": "{{sample.output_text}}", "reference": "{{item.a}}",
          "evaluation_metric": "cosine"}, "evaluation_metric"),
        ({"type": "score_model", "name": "judge", "model": "gpt-4o-2024-08-06", "input": []}, "input"),
        ({"type": "multi", "name": "m", "graders": {"a": CHECK}, "calculate_output": "a + b"}, "names 'b'"),
        ({"type": "multi", "name": "m", "graders": {"a": CHECK}, "calculate_output": "__import__('os')"},
         "calls something other than"),
        ({"type": "multi", "name": "m", "graders": {"a": {"type": "multi", "name": "n", "graders": {},
                                                          "calculate_output": "1"}}, "calculate_output": "a"},
         "does not match any of the expected tags"),
    ],
)
def test_bad_graders_are_rejected_naming_the_problem(grader: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_of(rft_grader=json.dumps(grader))
    assert message in str(caught.value)


def test_a_multi_grader_with_the_how_tos_operators_and_functions() -> None:
    grader = {"type": "multi", "name": "m", "graders": {
        "similarity": {"type": "text_similarity", "name": "s", "input": "{{sample.output_text}}",
                       "reference": "{{item.summary}}", "evaluation_metric": "bleu"},
        "label": {**CHECK, "reference": "{{item.label.value}}"}},
        "calculate_output": "max(0, (similarity + label) / 2) ^ 2 - abs(floor(label))"}
    spec = spec_of(rft_grader=json.dumps(grader))
    assert spec.reinforcement is not None
    assert rft.item_fields(spec.reinforcement.grader) == [("summary",), ("label", "value")]


def test_rft_hyperparameters_are_bounded() -> None:
    for key, value in (("reasoning_effort", "extreme"), ("eval_samples", "0"), ("compute_multiplier", "-1")):
        with pytest.raises(SpecError, match=key):
            spec_of(rft_grader=json.dumps(CHECK), **{key: value})


def test_method_reinforcement_needs_a_grader_and_a_grader_needs_reinforcement() -> None:
    with pytest.raises(SpecError, match="method reinforcement needs a grader"):
        spec_of(method="reinforcement")
    with pytest.raises(SpecError, match="but the method is dpo"):
        spec_of(method="dpo", rft_grader=json.dumps(CHECK))


def test_templates_with_spaces_are_a_warning_not_a_rejection() -> None:
    spec = spec_of(rft_grader=json.dumps({**CHECK, "reference": "{{ item.answer }}"}))
    assert [code for code, _ in spec_warnings(spec)] == ["grader_template_spaces"]


def test_the_models_rft_is_documented_for() -> None:
    assert rft.supports_rft(O4) and rft.supports_rft(f"{O4}.ft-0123abcd-x")
    assert not rft.supports_rft("gpt-4o-mini-2024-07-18") and not rft.supports_rft("o4-mini")
    assert rft.rft_only(O4) and not rft.rft_only("gpt-4.1-2025-04-14")


def test_rft_results_in_either_spelling_give_the_reward_summary() -> None:
    how_to = "step,train_loss,train_reward_mean,valid_reward_mean,train_sample_parse_error_count\n" \
             "1,1.0,0.30,,2\n2,0.9,0.45,0.40,1\n3,0.8,0.70,0.55,0\n"
    skill = "step,train_mean_reward,full_valid_mean_reward,reasoning_tokens_mean\n1,0.3,,600\n2,0.7,0.55,640\n"
    first = summarize(parse_results(how_to)).reward
    assert first is not None
    assert (first.first_train_reward_mean, first.final_train_reward_mean, first.best_train_reward_mean_step) == (
        0.30, 0.70, 3)
    assert (first.final_valid_reward_mean, first.parse_errors) == (0.55, 3)
    assert first.train_valid_gap == pytest.approx(0.15)
    second = summarize(parse_results(skill)).reward  # no loss column at all: still a results file
    assert second is not None and second.final_valid_reward_mean == 0.55 and second.final_reasoning_tokens_mean == 640
    assert summarize(parse_results("step,train_loss\n1,1.0\n")).reward is None


def test_the_reward_chart_is_drawn_only_for_rft_results() -> None:
    from shared.charts import chart_figures

    rft_table = parse_results("step,train_loss,train_reward_mean,valid_reward_mean\n1,1.0,0.3,\n2,0.9,0.6,0.5\n")
    assert set(chart_figures(rft_table, title="t")) == {"loss.png", "accuracy.png", "reward.png"}
    assert set(chart_figures(parse_results("step,train_loss\n1,1.0\n"), title="t")) == {"loss.png", "accuracy.png"}


def test_grader_model_is_wire_exact() -> None:
    with pytest.raises(ValidationError):
        rft.ReinforcementSpec.model_validate({"grader": {**CHECK, "name": ""}})


def test_a_score_model_grader_outside_the_how_tos_list_is_a_warning() -> None:
    judge = {"type": "score_model", "name": "judge", "input": [{"role": "user", "content": "{{sample.output_text}}"}],
             "range": [0, 1]}
    listed = spec_of(rft_grader=json.dumps({**judge, "model": "o3-mini-2025-01-31"}))
    assert spec_warnings(listed) == []
    other = spec_of(rft_grader=json.dumps({**judge, "model": "my-judge"}))
    assert [code for code, _ in spec_warnings(other)] == ["grader_model_not_listed"]


def test_the_reward_gates() -> None:
    from shared.gate import GateSpec, evaluate_gate

    rft_summary = summarize(parse_results(
        "step,train_loss,train_reward_mean,valid_reward_mean\n1,1.0,0.30,0.28\n2,0.9,0.80,0.60\n"))
    result = evaluate_gate(GateSpec(min_valid_reward=0.5, max_reward_gap=0.1), rft_summary)
    assert [(c.check, c.passed) for c in result.checks] == [("min_valid_reward", True), ("max_reward_gap", False)]
    assert result.reasons == ["reward_gap 0.20 is above the limit 0.10"]
    sft = evaluate_gate(GateSpec(min_valid_reward=0.5), summarize(parse_results("step,train_loss\n1,1.0\n")))
    assert not sft.passed and "not a reinforcement fine-tuning job" in sft.reasons[0]
    spec = build_spec(Settings(), metadata={"model": O4, "rft_grader": json.dumps(CHECK),
                                            "gate_min_valid_reward": "0.4", "gate_max_reward_gap": "0.1"})
    assert spec.gate == GateSpec(min_valid_reward=0.4, max_reward_gap=0.1)


def test_an_rft_example_is_an_eval_item_with_its_reference() -> None:
    from shared.evalspec import eval_item

    messages = [{"role": "developer", "content": "Number only."}, {"role": "user", "content": "2 + 3?"}]
    assert eval_item({"messages": messages, "answer": "5"}) == {
        "input": messages, "reference": "5", "reference_tool_calls": []}
    assert eval_item({"messages": messages, "answer": {"value": 5}})["reference"] == '{"value": 5}'
    assert eval_item({"messages": messages}) is None
    assert eval_item({"messages": [*messages, {"role": "developer", "content": "x"}], "answer": "5"}) is None


def test_profiles_are_strict_about_the_reinforcement_block() -> None:
    from shared.spec import parse_profile

    good = {"model": O4, "reinforcement": {"grader": CHECK, "hyperparameters": {"eval_samples": 3}}}
    assert parse_profile("rft", json.dumps(good).encode()) == good
    bad = {"reinforcement": {"grader": CHECK, "hyperparameters": {"eval_sample": 3}}}
    with pytest.raises(SpecError, match="unknown key 'reinforcement.hyperparameters.eval_sample'"):
        parse_profile("rft", json.dumps(bad).encode())
    flat = {"reasoning_effort": "low"}
    with pytest.raises(SpecError, match="it belongs at reinforcement.hyperparameters.reasoning_effort"):
        parse_profile("rft", json.dumps(flat).encode())


def test_an_rft_runs_files_and_its_test_file_are_validated_by_the_rft_rules() -> None:
    """The test file of an RFT run with `evaluation` is held to the run's rules (shared/ingest.py
    `validation_options`, also given to shared/heldout.py): its examples are RFT examples with the grader's field,
    not chat examples with an assistant reply (which the validator's defaults would ask of every line)."""
    from shared.ingest import validation_options
    from shared.validation import ValidationOptions, validate

    spec = spec_of(rft_grader=json.dumps(CHECK), eval_graders=json.dumps([{"type": "string_check"}]),
                   test_split="0.2")
    options = validation_options(Settings(), spec)
    assert (options.method, options.grader_fields, options.allow_unknown_model) == ("reinforcement",
                                                                                    (("answer",),), True)
    lines = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "answer": str(2 * i)}
             for i in range(12)]
    test_file = ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
    assert validate(test_file, model=O4, options=options).valid
    defaults = validate(test_file, model=O4, options=ValidationOptions(allow_unknown_model=True))
    assert not defaults.valid and {e.code for e in defaults.errors} == {"no_assistant_message"}
    del lines[3]["answer"]
    report = validate(("\n".join(json.dumps(line) for line in lines) + "\n").encode(), model=O4, options=options)
    assert [(e.line, e.code) for e in report.errors] == [(4, "rft_missing_grader_field")]
    # a supervised run's options stay the supervised ones
    supervised = validation_options(Settings(), build_spec(Settings(), metadata={}))
    assert (supervised.method, supervised.grader_fields) == ("supervised", ())


def test_an_rft_eval_item_takes_its_reference_from_the_field_the_training_grader_compares_with() -> None:
    from shared.evalspec import eval_item

    similar = {"type": "text_similarity", "name": "s", "input": "{{sample.output_text}}",
               "reference": "{{item.gold.text}}", "evaluation_metric": "bleu"}
    judge = {"type": "score_model", "name": "j", "model": "gpt-4o-2024-08-06",
             "input": [{"role": "user", "content": "{{item.question}} {{item.answer}} {{sample.output_text}}"}]}
    graders = {"check": CHECK, "similar": similar, "judge": judge,
               "multi": {"type": "multi", "name": "m", "graders": {"j": judge, "s": similar},
                         "calculate_output": "0.5 * j + 0.5 * s"}}
    fields = {key: rft.reference_field(spec_of(rft_grader=json.dumps(g)).reinforcement.grader)
              for key, g in graders.items()}
    assert fields == {"check": ("answer",), "similar": ("gold", "text"), "judge": None, "multi": ("gold", "text")}

    messages = [{"role": "user", "content": "2 + 3?"}]
    example = {"messages": messages, "topic": "sums", "answer": "5", "gold": {"text": "five"}}
    assert eval_item(example, reference_field=("answer",))["reference"] == "5"  # not the first field, "sums"
    assert eval_item(example, reference_field=("gold", "text"))["reference"] == "five"
    assert eval_item(example)["reference"] == "sums"  # no grader field known (a score_model grader): the first
    assert eval_item(example, reference_field=("missing",))["reference"] == "sums"
