"""What an evaluation is asked to do (`spec.evaluation`), what it found (`record.evaluation`), and how this app's
graders are written in the Evals API's grader vocabulary (testing criteria).

Graders (one list per run spec or profile):

| here | sent to the Evals API as |
|---|---|
| `string_check` `eq` / `ne` (case-sensitive) | `string_check` `eq` / `ne` |
| `string_check` `contains` (`like` / `ilike` by `case_sensitive`) | `string_check` `like` / `ilike` |
| `string_check` `eq` ignoring case, `starts_with`, `regex` | `python` grader |
| `text_similarity` (`fuzzy_match`, `bleu`, `rouge_1`..`rouge_5`, `rouge_l`) | `text_similarity`, `pass_threshold` |
| `json_match` (fields of a JSON answer equal the reference's) | `python` grader |
| `tool_call_match` (function name, then arguments) | `python` grader |
| `score_model` (a judge deployment scores against a rubric) | `score_model` (`range`, `pass_threshold`) |

Every test example becomes one eval item: `input` (the messages before the last assistant turn), `reference`
(that turn's text) and `reference_tool_calls` (its tool calls, if any). Templates use `{{item.reference}}` and
`{{sample.output_text}}`; python graders read `sample["output_text"]`, `sample.get("output_tools")` and
`item["reference"]`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GraderType = Literal["string_check", "text_similarity", "json_match", "tool_call_match", "score_model"]
StringOperation = Literal["eq", "ne", "contains", "starts_with", "regex", "like", "ilike"]
SimilarityMetric = Literal["fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"]
OUTPUT = "{{sample.output_text}}"
REFERENCE = "{{item.reference}}"
DEFAULT_RUBRIC = (
    "You grade a support assistant's answer against the reference answer. Score 1 when it gives the same "
    "facts and steps, 0 when it does not answer the question or contradicts the reference, in between for a "
    "partial answer."
)



def from_metadata_json(value: Any, field: str) -> Any:
    """A field that blob metadata carries as a JSON string (a profile gives it as JSON already)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{field} is not JSON: {exc.msg}") from None

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraderSpec(_Model):
    type: GraderType
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9 _.-]{1,64}$")
    operation: StringOperation = "eq"
    case_sensitive: bool = True
    pattern: str | None = None
    """`regex`: the pattern (default: the reference, escaped)."""
    evaluation_metric: SimilarityMetric = "fuzzy_match"
    pass_threshold: float | None = None
    fields: list[str] | None = None
    """`json_match`: the fields compared (default: every field of the reference)."""
    rubric: str | None = None
    model: str | None = None
    """`score_model`: the judge deployment (default: setting EVAL_GRADER_DEPLOYMENT)."""
    range: tuple[float, float] = (0.0, 1.0)

    @model_validator(mode="after")
    def _check(self) -> GraderSpec:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a regular expression: {exc}") from None
        if self.range[0] >= self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.type == "string_check":
            return f"string_check {self.operation}"
        if self.type == "text_similarity":
            return self.evaluation_metric
        return self.type


class EvaluationSpec(_Model):
    """`spec.evaluation`: held-out evaluation of the candidate against a baseline, and the gate on it."""

    graders: list[GraderSpec] = Field(min_length=1, max_length=8)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    min_improvement: float = Field(default=0.0, ge=-1.0, le=1.0)
    regression_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    """A grader whose pass rate drops by more than this against the baseline is a failed check."""
    compare_to: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
    """The baseline's deployment (default: the serve_as deployment when it serves a model, else setting
    EVAL_BASELINE_DEPLOYMENT)."""
    checkpoints: bool = False
    """Evaluate the checkpoints of the last epochs too; the best one is the candidate."""

    @field_validator("graders", mode="before")
    @classmethod
    def _graders_from_json(cls, value: Any) -> Any:
        return from_metadata_json(value, "graders")

    def labels(self) -> list[str]:
        seen: dict[str, int] = {}
        out = []
        for g in self.graders:
            label = g.label
            seen[label] = seen.get(label, 0) + 1
            out.append(label if seen[label] == 1 else f"{label} {seen[label]}")
        return out


# --- grader vocabulary -> testing criteria ----------------------------------------------------------------------
def _python(name: str, body: str, threshold: float) -> dict[str, Any]:
    source = "def grade(sample, item):\n" + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())
    return {"type": "python", "name": name, "source": source, "pass_threshold": threshold}


def testing_criterion(grader: GraderSpec, name: str, *, judge: str) -> dict[str, Any]:
    """One grader as the Evals API's testing criterion (see the module table)."""
    if grader.type == "string_check":
        op, cs = grader.operation, grader.case_sensitive
        if op in ("eq", "ne") and cs:
            return {"type": "string_check", "name": name, "input": OUTPUT, "reference": REFERENCE, "operation": op}
        if op in ("contains", "like", "ilike"):
            native = "like" if (op == "like" or (op == "contains" and cs)) else "ilike"
            return {"type": "string_check", "name": name, "input": OUTPUT, "reference": REFERENCE,
                    "operation": native}
        fold = "" if cs else ".lower()"
        if op in ("eq", "ne"):
            test = f"out{fold} {'==' if op == 'eq' else '!='} ref{fold}"
        elif op == "starts_with":
            test = f"out.strip(){fold}.startswith(ref.strip(){fold})"
        else:
            pattern = grader.pattern if grader.pattern is not None else None
            flags = "" if cs else ", re.IGNORECASE"
            pat = repr(pattern) if pattern is not None else "re.escape(ref)"
            test = f"re.search({pat}, out{flags}) is not None"
        body = (
            "import re\n"
            "out = str(sample.get('output_text') or '')\n"
            "ref = str(item.get('reference') or '')\n"
            f"return 1.0 if {test} else 0.0\n"
        )
        return _python(name, body, 1.0)
    if grader.type == "text_similarity":
        return {"type": "text_similarity", "name": name, "input": OUTPUT, "reference": REFERENCE,
                "evaluation_metric": grader.evaluation_metric,
                "pass_threshold": grader.pass_threshold if grader.pass_threshold is not None else 0.5}
    if grader.type == "json_match":
        fields = json.dumps(grader.fields) if grader.fields else "None"
        body = (
            "import json\n"
            "try:\n"
            "    ref = json.loads(item.get('reference') or '')\n"
            "    out = json.loads(sample.get('output_text') or '')\n"
            "except ValueError:\n"
            "    return 0.0\n"
            "if not isinstance(ref, dict) or not isinstance(out, dict):\n"
            "    return 1.0 if ref == out else 0.0\n"
            f"keys = {fields} or sorted(ref)\n"
            "if not keys:\n"
            "    return 1.0\n"
            "return sum(1.0 for k in keys if k in out and out.get(k) == ref.get(k)) / len(keys)\n"
        )
        return _python(name, body, grader.pass_threshold if grader.pass_threshold is not None else 1.0)
    if grader.type == "tool_call_match":
        body = (
            "import json\n"
            "def calls(raw):\n"
            "    out = []\n"
            "    for c in raw or []:\n"
            "        f = c.get('function', c) if isinstance(c, dict) else {}\n"
            "        args = f.get('arguments', {})\n"
            "        if isinstance(args, str):\n"
            "            try:\n"
            "                args = json.loads(args)\n"
            "            except ValueError:\n"
            "                pass\n"
            "        out.append((f.get('name'), args))\n"
            "    return out\n"
            "want = calls(item.get('reference_tool_calls'))\n"
            "got = calls(sample.get('output_tools'))\n"
            "if not want:\n"
            "    return 1.0 if not got else 0.0\n"
            "score = 0.0\n"
            "for i, (name, args) in enumerate(want):\n"
            "    if i < len(got) and got[i][0] == name:\n"
            "        score += 1.0 if got[i][1] == args else 0.5\n"
            "return score / max(len(want), len(got))\n"
        )
        return _python(name, body, grader.pass_threshold if grader.pass_threshold is not None else 1.0)
    low, high = grader.range
    return {
        "type": "score_model",
        "name": name,
        "model": grader.model or judge,
        "input": [
            {"role": "system", "content": (grader.rubric or DEFAULT_RUBRIC)
             + f" Answer with JSON {{\"score\": <number from {low:g} to {high:g}>}}."},
            {"role": "user", "content": f"Reference answer: {REFERENCE}\nAnswer to grade: {OUTPUT}"},
        ],
        "range": [low, high],
        "pass_threshold": grader.pass_threshold if grader.pass_threshold is not None else low + (high - low) / 2,
    }


def testing_criteria(spec: EvaluationSpec, *, judge: str) -> list[dict[str, Any]]:
    return [testing_criterion(g, name, judge=judge) for g, name in zip(spec.graders, spec.labels(), strict=True)]


def grader_range(spec: EvaluationSpec, name: str) -> tuple[float, float]:
    for g, label in zip(spec.graders, spec.labels(), strict=True):
        if label == name:
            return g.range if g.type == "score_model" else (0.0, 1.0)
    return (0.0, 1.0)


def eval_item(example: dict[str, Any], *, reference_field: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    """A test example as an eval item {input, reference, reference_tool_calls}; None for a format it has none.

    `reference_field`: an RFT run's, the item field its training grader compares with (shared/rft.py
    `reference_field`)."""
    if isinstance(example.get("messages"), list):
        messages = [m for m in example["messages"] if isinstance(m, dict)]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None:
            return _rft_item(example, messages, reference_field)
        reply = messages[last]
        content = reply.get("content")
        text = content if isinstance(content, str) else " ".join(
            str(p.get("text", "")) for p in content or [] if isinstance(p, dict)
        )
        prompt = [{"role": m.get("role"), "content": m.get("content") or ""} for m in messages[:last]]
        return {"input": prompt, "reference": text or "", "reference_tool_calls": reply.get("tool_calls") or []}
    if isinstance(example.get("prompt"), str) and isinstance(example.get("completion"), str):
        return {"input": [{"role": "user", "content": example["prompt"]}], "reference": example["completion"],
                "reference_tool_calls": []}
    if isinstance(example.get("input"), dict) and isinstance(example.get("preferred_output"), list):
        preferred = example["preferred_output"][0] if example["preferred_output"] else {}
        return {"input": example["input"].get("messages") or [], "reference": str(preferred.get("content") or ""),
                "reference_tool_calls": []}
    return None


def _rft_item(
    example: dict[str, Any], messages: list[dict[str, Any]], field: tuple[str, ...] | None
) -> dict[str, Any] | None:
    """An RFT example (no assistant reply, the user's message last): the prompt is every message, the reference
    the field its training grader compares with (`field`, a path), so `{{item.reference}}` means the same; with
    no such field (a score_model grader), the first field beside `messages`."""
    if not messages or messages[-1].get("role") != "user":
        return None
    value: Any = None
    if field is not None:
        value = example
        for key in field:
            value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        value = next((v for k, v in example.items() if k not in ("messages", "tools", "parallel_tool_calls")), None)
    if value is None:
        return None
    reference = value if isinstance(value, str) else json.dumps(value)
    prompt = [{"role": m.get("role"), "content": m.get("content") or ""} for m in messages]
    return {"input": prompt, "reference": reference, "reference_tool_calls": []}


# --- what the record keeps ---------------------------------------------------------------------------------------
class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EvalSide(_Out):
    model: str | None = None
    deployment: str | None = None
    score: float | None = None
    pass_rate: float | None = None


class Evaluation(_Out):
    """`record.evaluation`: the verdict, in the fields the README documents."""

    status: Literal["pending", "running", "completed", "failed"] = "pending"
    test_examples: int = 0
    graders: list[str] = Field(default_factory=list)
    baseline: EvalSide = Field(default_factory=EvalSide)
    candidate: EvalSide = Field(default_factory=EvalSide)
    improvement: float | None = None
    ci95: tuple[float, float] | None = None
    passed: bool | None = None
    reasons: list[str] = Field(default_factory=list)


class EvalTarget(_Out):
    """One model evaluated: the baseline, or a candidate (the final model or a checkpoint)."""

    role: Literal["baseline", "candidate"]
    key: str
    """`baseline`, `final`, `checkpoint-<step>`: names the run's effects and eval runs."""
    model: str
    deployment: str
    temporary: bool = False
    """Deployed for the evaluation (and deleted once the verdict is in)."""
    deployment_state: str | None = None
    eval_run_id: str | None = None
    status: str | None = None
    error: str | None = None
    score: float | None = None
    pass_rate: float | None = None
    per_grader: dict[str, float] = Field(default_factory=dict)
    """Pass rate per grader."""


class EvalCheck(_Out):
    name: str
    passed: bool
    detail: str


class LostExample(_Out):
    item: int
    prompt: str
    reference: str
    baseline_answer: str
    candidate_answer: str
    baseline_score: float
    candidate_score: float


class EvalProgress(_Out):
    """`record.eval`: the work behind `record.evaluation` (eval id, targets, checks, the examples lost most on)."""

    test_file_id: str | None = None
    eval_id: str | None = None
    targets: list[EvalTarget] = Field(default_factory=list)
    selected: str | None = None
    """The key of the candidate the verdict is about (the best when checkpoints were evaluated)."""
    checks: list[EvalCheck] = Field(default_factory=list)
    lost: list[LostExample] = Field(default_factory=list)
    cleaned_up: bool = False

    def target(self, key: str) -> EvalTarget | None:
        return next((t for t in self.targets if t.key == key), None)


class Promotion(_Out):
    """`record.promotion`: the serving deployment moved to this run's model; `previous_model` is the lineage."""

    deployment: str
    model: str
    previous_model: str | None = None
    at: str | None = None
