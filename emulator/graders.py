"""The Evals API's graders (testing criteria), evaluated the way the service describes them.

Vocabulary (openai/openai-python `types/graders`, Azure OpenAI authoring reference 2025-04-01-preview):

- `string_check`: `operation` eq | ne | like (input contains reference) | ilike (the same, ignoring case);
  score 1 or 0.
- `text_similarity`: `evaluation_metric` fuzzy_match (rapidfuzz), bleu (sacrebleu sentence BLEU), rouge_1 ..
  rouge_5 / rouge_l (rouge-score F-measure); score in [0, 1], passed at `pass_threshold`.
- `python`: `source` defining `grade(sample, item) -> float`; passed at `pass_threshold` (default 1.0).
- `score_model`: a judge deployment (`model`) scores the sample within `range` (default [0, 1]); passed at
  `pass_threshold`. The emulator has no language model: its judge scores the answer's token-set similarity to
  the item's `reference` (rapidfuzz `token_set_ratio`), scaled into the range; the judge deployment must exist.

Templates: `{{ sample.output_text }}`, `{{ item.<field> }}` (dotted paths, JSON-encoded when not a string).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from rapidfuzz import fuzz

_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")
STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
SIMILARITY_METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4",
                      "rouge_5", "rouge_l")
SUPPORTED_METRICS = ("fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l")
GRADER_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model")


class GraderError(ValueError):
    """A testing criterion the service would refuse (400 at eval creation)."""


def lookup(path: str, namespace: dict[str, Any]) -> Any:
    cur: Any = namespace
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return ""
    return cur


def render(template: Any, namespace: dict[str, Any]) -> str:
    """A template string with `{{ item.x }}` / `{{ sample.output_text }}` filled in."""
    text = str(template)

    def value(m: re.Match[str]) -> str:
        found = lookup(m.group(1), namespace)
        return found if isinstance(found, str) else json.dumps(found)

    return _TEMPLATE.sub(value, text)


def check(criterion: Any, index: int) -> dict[str, Any]:
    """Validate one testing criterion as the service does at eval creation; returns it as stored."""
    if not isinstance(criterion, dict):
        raise GraderError(f"testing_criteria[{index}] must be an object.")
    kind = criterion.get("type")
    if kind not in GRADER_TYPES:
        raise GraderError(f"testing_criteria[{index}].type '{kind}' is not one of {', '.join(GRADER_TYPES)}.")
    if not isinstance(criterion.get("name"), str) or not criterion["name"]:
        raise GraderError(f"testing_criteria[{index}].name is required.")
    if kind == "string_check":
        if criterion.get("operation") not in STRING_OPERATIONS:
            raise GraderError(f"testing_criteria[{index}].operation must be one of {', '.join(STRING_OPERATIONS)}.")
        for key in ("input", "reference"):
            if not isinstance(criterion.get(key), str):
                raise GraderError(f"testing_criteria[{index}].{key} is required.")
    elif kind == "text_similarity":
        metric = criterion.get("evaluation_metric")
        if metric not in SIMILARITY_METRICS:
            raise GraderError(f"testing_criteria[{index}].evaluation_metric must be one of "
                              f"{', '.join(SIMILARITY_METRICS)}.")
        if metric not in SUPPORTED_METRICS:
            raise GraderError(f"testing_criteria[{index}].evaluation_metric '{metric}' is not supported by the "
                              "emulator.")
        if not isinstance(criterion.get("pass_threshold"), (int, float)):
            raise GraderError(f"testing_criteria[{index}].pass_threshold is required.")
    elif kind == "python":
        source = criterion.get("source")
        if not isinstance(source, str) or "def grade" not in source:
            raise GraderError(f"testing_criteria[{index}].source must define grade(sample, item).")
        compile_grader(source)
    elif kind == "score_model":
        if not isinstance(criterion.get("model"), str) or not isinstance(criterion.get("input"), list):
            raise GraderError(f"testing_criteria[{index}] needs model and input (messages).")
        rng = criterion.get("range", [0, 1])
        if not (isinstance(rng, list) and len(rng) == 2 and rng[0] < rng[1]):
            raise GraderError(f"testing_criteria[{index}].range must be [min, max].")
    else:
        raise GraderError(f"testing_criteria[{index}].type 'label_model' is not supported by the emulator.")
    return dict(criterion)


def compile_grader(source: str) -> Callable[[dict[str, Any], dict[str, Any]], Any]:
    namespace: dict[str, Any] = {}
    try:
        exec(compile(source, "<grader>", "exec"), namespace)  # noqa: S102 - the grader's own code, as the service runs it
    except SyntaxError as exc:
        raise GraderError(f"python grader source does not compile: {exc.msg} (line {exc.lineno})") from None
    grade = namespace.get("grade")
    if not callable(grade):
        raise GraderError("python grader source must define grade(sample, item).")
    return grade  # type: ignore[no-any-return]


def _rouge(metric: str, output: str, reference: str) -> float:
    from rouge_score import rouge_scorer  # loaded where a ROUGE grader runs

    key = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
    return float(rouge_scorer.RougeScorer([key]).score(reference, output)[key].fmeasure)


def similarity(metric: str, output: str, reference: str) -> float:
    if metric == "fuzzy_match":
        return fuzz.ratio(output, reference) / 100.0
    if metric == "bleu":
        import sacrebleu  # loaded where a BLEU grader runs

        return float(sacrebleu.sentence_bleu(output, [reference]).score) / 100.0
    return _rouge(metric, output, reference)


def grade(
    criterion: dict[str, Any], item: dict[str, Any], sample: dict[str, Any], judge: Callable[[str], bool]
) -> dict[str, Any]:
    """One grader's result for one item: {name, type, score, passed, sample}. `judge(deployment)` tells
    whether a judge deployment exists."""
    namespace = {"item": item, "sample": sample}
    kind = criterion["type"]
    result: dict[str, Any] = {"name": criterion["name"], "type": kind, "sample": None}
    if kind == "string_check":
        value, reference = render(criterion["input"], namespace), render(criterion["reference"], namespace)
        op = criterion["operation"]
        ok = {
            "eq": value == reference,
            "ne": value != reference,
            "like": reference in value,
            "ilike": reference.lower() in value.lower(),
        }[op]
        score = 1.0 if ok else 0.0
        return {**result, "score": score, "passed": ok}
    if kind == "text_similarity":
        value, reference = render(criterion["input"], namespace), render(criterion["reference"], namespace)
        score = round(similarity(criterion["evaluation_metric"], value, reference), 6)
        return {**result, "score": score, "passed": score >= float(criterion["pass_threshold"])}
    if kind == "python":
        threshold = float(criterion.get("pass_threshold", 1.0))
        try:
            score = float(compile_grader(criterion["source"])(sample, item))
        except Exception as exc:  # noqa: BLE001 - a grader's own error is that item's error, as in the service
            return {**result, "score": 0.0, "passed": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        if math.isnan(score):
            score = 0.0
        return {**result, "score": score, "passed": score >= threshold}
    # score_model
    low, high = (float(x) for x in criterion.get("range", [0, 1]))
    if not judge(criterion["model"]):
        return {**result, "score": low, "passed": False,
                "error": f"The judge deployment '{criterion['model']}' does not exist."}
    reference = str(item.get("reference", ""))
    output = str(sample.get("output_text", ""))
    fraction = fuzz.token_set_ratio(output, reference) / 100.0 if reference or output else 1.0
    score = round(low + (high - low) * fraction, 6)
    threshold = float(criterion.get("pass_threshold", low + (high - low) / 2))
    rendered = [{"role": m.get("role"), "content": render(m.get("content", ""), namespace)}
                for m in criterion["input"] if isinstance(m, dict)]
    return {**result, "score": score, "passed": score >= threshold,
            "sample": {"input": rendered, "output": [{"role": "assistant", "content": json.dumps({"score": score})}]}}
