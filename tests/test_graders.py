"""Graders: this app's vocabulary written as Evals API testing criteria, run by the emulator's grader engine
(the same one its Evals API uses), and the verdict the gate draws from the scores."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from emulator import graders
from shared.aoai.evals import GraderResult, OutputItem
from shared.evalgate import best_candidate, bootstrap_ci, score_items, verdict
from shared.evalspec import EvaluationSpec, GraderSpec, eval_item
from shared.evalspec import testing_criterion as criterion_of


def run(spec: dict[str, Any], output: str, reference: str = "", **item: Any) -> dict[str, Any]:
    grader = GraderSpec.model_validate(spec)
    criterion = graders.check(criterion_of(grader, grader.label, judge="judge"), 0)
    sample = {"output_text": output, "output_tools": item.pop("output_tools", [])}
    return graders.grade(criterion, {"reference": reference, **item}, sample, judge=lambda name: name == "judge")


@pytest.mark.parametrize(
    ("spec", "output", "reference", "passed"),
    [
        ({"type": "string_check", "operation": "eq"}, "Open Settings", "Open Settings", True),
        ({"type": "string_check", "operation": "eq"}, "open settings", "Open Settings", False),
        ({"type": "string_check", "operation": "eq", "case_sensitive": False}, "open settings", "Open Settings", True),
        ({"type": "string_check", "operation": "ne"}, "a", "b", True),
        ({"type": "string_check", "operation": "contains"}, "Please open Settings now", "Settings", True),
        ({"type": "string_check", "operation": "contains"}, "please open settings", "Settings", False),
        ({"type": "string_check", "operation": "contains", "case_sensitive": False}, "open settings", "Settings",
         True),
        ({"type": "string_check", "operation": "starts_with"}, "  Open Settings > Billing", "Open Settings", True),
        ({"type": "string_check", "operation": "starts_with"}, "Then Open Settings", "Open Settings", False),
        ({"type": "string_check", "operation": "regex", "pattern": r"ticket #\d{4}"}, "see ticket #1234", "", True),
        ({"type": "string_check", "operation": "regex", "pattern": r"ticket #\d{4}"}, "see ticket #12", "", False),
        ({"type": "string_check", "operation": "regex"}, "cost is $5 (approx)", "$5 (approx)", True),
    ],
)
def test_string_checks(spec: dict[str, Any], output: str, reference: str, passed: bool) -> None:
    result = run(spec, output, reference)
    assert result["passed"] is passed and result["score"] == (1.0 if passed else 0.0)


def test_native_string_check_operations_are_the_evals_api_ones() -> None:
    assert criterion_of(GraderSpec(type="string_check", operation="contains"), "c", judge="")["operation"] \
        == "like"
    assert criterion_of(GraderSpec(type="string_check", operation="contains", case_sensitive=False), "c",
                             judge="")["operation"] == "ilike"
    assert criterion_of(GraderSpec(type="string_check", operation="starts_with"), "s", judge="")["type"] == \
        "python"


def test_text_similarity_metrics_come_from_the_libraries() -> None:
    same = "For invoices in project 3, open Settings > Invoices."
    for metric in ("fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_l"):
        exact = run({"type": "text_similarity", "evaluation_metric": metric}, same, same)
        assert exact["score"] == pytest.approx(1.0) and exact["passed"]
        unrelated = run({"type": "text_similarity", "evaluation_metric": metric}, "Sorry, I cannot help.", same)
        assert unrelated["score"] < 0.35 and not unrelated["passed"]
    # figures of the libraries themselves (rapidfuzz ratio, rouge-score F1 of the longest common subsequence)
    assert run({"type": "text_similarity", "evaluation_metric": "fuzzy_match"}, "abc", "abd")["score"] == \
        pytest.approx(2 / 3, abs=1e-6)
    assert run({"type": "text_similarity", "evaluation_metric": "rouge_l"}, "the cat sat", "the cat sat on")[
        "score"] == pytest.approx(6 / 7, abs=1e-6)


def test_json_field_match() -> None:
    ref = json.dumps({"intent": "refund", "priority": "high", "note": "x"})
    spec = {"type": "json_match", "fields": ["intent", "priority"]}
    assert run(spec, json.dumps({"intent": "refund", "priority": "high", "note": "y"}), ref)["score"] == 1.0
    half = run(spec, json.dumps({"intent": "refund", "priority": "low"}), ref)
    assert half["score"] == 0.5 and not half["passed"]
    assert run(spec, "not json", ref)["score"] == 0.0
    assert run({"type": "json_match"}, json.dumps({"intent": "refund", "priority": "high", "note": "x"}), ref)[
        "score"] == 1.0


def test_tool_call_match_compares_name_then_arguments() -> None:
    want = [{"type": "function", "function": {"name": "get_invoice", "arguments": json.dumps({"id": 7})}}]
    spec = {"type": "tool_call_match"}
    same = run(spec, "", reference_tool_calls=want,
               output_tools=[{"function": {"name": "get_invoice", "arguments": '{"id": 7}'}}])
    assert same["score"] == 1.0 and same["passed"]
    args = run(spec, "", reference_tool_calls=want,
               output_tools=[{"function": {"name": "get_invoice", "arguments": '{"id": 8}'}}])
    assert args["score"] == 0.5 and not args["passed"]
    none = run(spec, "I will look it up", reference_tool_calls=want)
    assert none["score"] == 0.0


def test_score_model_judge_needs_its_deployment_and_scores_in_its_range() -> None:
    spec = {"type": "score_model", "range": [0, 10], "pass_threshold": 7}
    good = run(spec, "For invoices open Settings > Invoices.", "For invoices open Settings > Invoices.")
    assert good["score"] == 10 and good["passed"] and good["sample"]["input"][1]["content"].startswith("Reference")
    grader = GraderSpec.model_validate({**spec, "model": "nowhere"})
    criterion = criterion_of(grader, "judge", judge="judge")
    missing = graders.grade(criterion, {"reference": "x"}, {"output_text": "x"}, judge=lambda name: False)
    assert missing["error"] and not missing["passed"]


def test_grader_specs_are_checked() -> None:
    with pytest.raises(ValidationError):
        GraderSpec.model_validate({"type": "string_check", "operation": "regex", "pattern": "("})
    with pytest.raises(ValidationError):
        GraderSpec.model_validate({"type": "bleu_score"})
    with pytest.raises(ValidationError):
        EvaluationSpec.model_validate({"graders": []})
    spec = EvaluationSpec.model_validate({"graders": json.dumps([{"type": "text_similarity"}] * 2)})
    assert spec.labels() == ["fuzzy_match", "fuzzy_match 2"]
    with pytest.raises(graders.GraderError):
        graders.check({"type": "text_similarity", "name": "x", "evaluation_metric": "meteor", "input": "",
                       "reference": "", "pass_threshold": 0.5}, 0)


def test_eval_items_from_each_format() -> None:
    chat = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                         {"role": "assistant", "content": "a", "tool_calls": [{"id": "1"}]}]}
    assert eval_item(chat) == {"input": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
                               "reference": "a", "reference_tool_calls": [{"id": "1"}]}
    assert eval_item({"prompt": "p", "completion": "c"})["reference"] == "c"  # type: ignore[index]
    assert eval_item({"messages": [{"role": "user", "content": "q"}]}) is None


def _items(scores: list[list[float]], passed: list[list[bool]] | None = None) -> list[OutputItem]:
    names = ["a", "b"]
    out = []
    for i, row in enumerate(scores):
        results = [GraderResult(name=names[j], score=s, passed=(passed[i][j] if passed else s >= 0.5))
                   for j, s in enumerate(row)]
        out.append(OutputItem(id=f"o{i}", datasource_item_id=i, results=results,
                              datasource_item={"input": [{"role": "user", "content": f"q{i}"}], "reference": "r"},
                              sample={"output_text": f"answer {i}"}))
    return out


SPEC = EvaluationSpec.model_validate({"graders": [{"type": "text_similarity", "name": "a"},
                                                   {"type": "text_similarity", "name": "b"}],
                                      "min_score": 0.5, "min_improvement": 0.1})


def test_verdict_figures() -> None:
    base = score_items(SPEC, _items([[0.2, 0.4]] * 10))
    cand = score_items(SPEC, _items([[0.9, 0.7]] * 8 + [[0.1, 0.1]] * 2))
    assert base.score == pytest.approx(0.3) and cand.score == pytest.approx(0.66)
    result = verdict(SPEC, base, cand)
    assert result.passed and result.improvement == pytest.approx(0.36)
    assert result.ci95[0] < 0.36 < result.ci95[1]
    assert [lost.item for lost in result.lost] == [8, 9]  # the two items the candidate did worse on
    assert result.lost[0].baseline_score == pytest.approx(0.3) and result.lost[0].candidate_score == pytest.approx(0.1)


def test_verdict_refuses_a_regression_on_one_grader() -> None:
    base = score_items(SPEC, _items([[0.0, 1.0]] * 10))
    cand = score_items(SPEC, _items([[1.0, 0.6]] * 10, passed=[[True, False]] * 10))
    result = verdict(SPEC, base, cand)
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == ["no_regression:b"]
    assert "pass rate 0% against the baseline's 100%" in result.reasons[0]


def test_verdict_refuses_too_small_an_improvement_and_errored_items() -> None:
    base = score_items(SPEC, _items([[0.6, 0.6]] * 10))
    items = _items([[0.65, 0.65]] * 10)
    items[3].results[0].error = "judge deployment missing"
    cand = score_items(SPEC, items)
    result = verdict(SPEC, base, cand)
    failed = {c.name for c in result.checks if not c.passed}
    # the errored item also fails grader a there: a 10-point drop in its pass rate, beyond the 5-point tolerance
    assert failed == {"min_improvement", "all_items_graded", "no_regression:a"}


def test_bootstrap_interval_is_deterministic_and_narrows_with_more_items() -> None:
    few = [0.1, 0.5, -0.2, 0.4, 0.3]
    assert bootstrap_ci(few) == bootstrap_ci(few)
    wide = bootstrap_ci(few)
    narrow = bootstrap_ci(few * 20)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert bootstrap_ci([0.25] * 30) == (0.25, 0.25)


def test_best_candidate_prefers_the_later_on_a_tie() -> None:
    a = score_items(SPEC, _items([[0.5, 0.5]]))
    b = score_items(SPEC, _items([[0.5, 0.5]]))
    c = score_items(SPEC, _items([[0.2, 0.2]]))
    assert best_candidate({"checkpoint-10": (0, a), "final": (1, b), "checkpoint-5": (2, c)}) == "final"
