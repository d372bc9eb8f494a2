"""Reinforcement fine-tuning (RFT): the grader and hyperparameters of a run, checked before anything is uploaded.

What the service takes (sources in docs/azure-openai-contract.md, "Reinforcement fine-tuning"):

* models: `o4-mini-2025-04-16` (GA) and `gpt-5-2025-08-07` (private preview) - the RFT how-to's "Model support";
* the job: `method: {"type": "reinforcement", "reinforcement": {"grader": ..., "hyperparameters": ...,
  "response_format"?}}` (Azure's v1 spec `AzureFineTuneReinforcementMethod`), sent with the preview api-version;
* one grader (several only through a `multi` grader): `string_check`, `text_similarity`, `score_model` or
  `multi` - the four the Azure spec's `AzureFineTuneReinforcementMethod.grader` allows (its `multi` combines the
  first three); field names and enumerations as openai-python's `types/graders` and the how-to give them;
* templates `{{item.<field>}}` (a field of the training example beside `messages`, JSON-path-like for nested
  objects) and `{{sample.output_text}}` / `{{sample.output_json...}}` / `{{sample.output_tools}}`;
* hyperparameters: the supervised three plus `eval_interval`, `eval_samples`, `compute_multiplier` (each
  `auto` or a number) and `reasoning_effort` (`default`, `low`, `medium`, `high`; the how-to: default medium).

A grader naming an item field that an example lacks gets no error from the service: it scores 0 for every
sample (platform gotcha "grader field name mismatch is SILENT"). The validator (shared/validation/reinforcement.py)
therefore rejects such a file before upload, naming the line; `item_fields` says which fields a grader reads.
"""

from __future__ import annotations

import ast
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.evalspec import from_metadata_json

RFT_MODELS: tuple[str, ...] = ("o4-mini-2025-04-16", "gpt-5-2025-08-07")
"""The RFT how-to's "Model support" (gpt-5: private preview)."""
RFT_ONLY_MODELS: tuple[str, ...] = ("o4-mini-2025-04-16", "gpt-5-2025-08-07")
"""Models with no supervised fine-tuning (training-types.md: o4-mini and gpt-5 are RFT only)."""

GRADER_MODELS: tuple[str, ...] = ("gpt-4o-2024-08-06", "o3-mini-2025-01-31")
"""The models the RFT how-to lists for model graders ("Model graders do not require model deployments")."""

StringOperation = Literal["eq", "ne", "like", "ilike"]
SimilarityMetric = Literal[
    "fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]
NAMESPACES = ("item", "sample")
SAMPLE_FIELDS = ("output_text", "output_json", "output_tools")
CALCULATE_FUNCTIONS = frozenset({"min", "max", "abs", "floor", "ceil", "exp", "sqrt", "log"})
TEMPLATE = re.compile(r"\{\{(\s*)([^{}]*?)(\s*)\}\}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def supports_rft(model: str) -> bool:
    """A model RFT is documented for, or a fine-tune of one (`<model>.ft-...`)."""
    name = model.strip().lower()
    return any(name == m or name.startswith(m + ".ft-") for m in RFT_MODELS)


def rft_only(model: str) -> bool:
    name = model.strip().lower()
    return any(name == m or name.startswith(m + ".ft-") for m in RFT_ONLY_MODELS)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StringCheckGrader(_Wire):
    type: Literal["string_check"]
    name: str = Field(min_length=1)
    operation: StringOperation
    input: str
    reference: str


class TextSimilarityGrader(_Wire):
    type: Literal["text_similarity"]
    name: str = Field(min_length=1)
    input: str
    reference: str
    evaluation_metric: SimilarityMetric
    pass_threshold: float | None = None


class GraderMessage(_Wire):
    role: Literal["user", "assistant", "system", "developer"]
    content: str
    type: Literal["message"] | None = None


class ScoreModelGrader(_Wire):
    type: Literal["score_model"]
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    input: list[GraderMessage] = Field(min_length=1)
    range: tuple[float, float] | None = None
    pass_threshold: float | None = None
    sampling_params: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _range(self) -> ScoreModelGrader:
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        return self


SimpleGrader = Annotated[StringCheckGrader | TextSimilarityGrader | ScoreModelGrader, Field(discriminator="type")]


class MultiGrader(_Wire):
    type: Literal["multi"]
    name: str = Field(min_length=1)
    graders: dict[str, SimpleGrader] = Field(min_length=1)
    calculate_output: str = Field(min_length=1)

    @model_validator(mode="after")
    def _formula(self) -> MultiGrader:
        check_calculate_output(self.calculate_output, set(self.graders))
        return self


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | ScoreModelGrader | MultiGrader, Field(discriminator="type")
]


class RftHyperparameters(_Wire):
    """The RFT-only hyperparameters (the supervised three stay in `spec.hyperparameters`); None = `auto`."""

    eval_interval: int | None = Field(default=None, ge=1)
    eval_samples: int | None = Field(default=None, ge=1)
    compute_multiplier: float | None = Field(default=None, gt=0)
    reasoning_effort: Literal["default", "low", "medium", "high"] | None = None


class ReinforcementSpec(_Wire):
    """`spec.reinforcement`: what an RFT job is graded with."""

    grader: Grader
    hyperparameters: RftHyperparameters = Field(default_factory=RftHyperparameters)
    response_format: dict[str, Any] | None = None
    """A `json_schema` response format the model samples with during training (optional)."""

    @field_validator("grader", mode="before")
    @classmethod
    def _grader_from_json(cls, value: Any) -> Any:
        return from_metadata_json(value, "grader")

    @model_validator(mode="after")
    def _templates(self) -> ReinforcementSpec:
        for where, text in _template_strings(self.grader):
            for _, ref, _ in TEMPLATE.findall(text):
                _check_reference(ref, where)
        return self

    def method_body(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """The job create's `method`: the grader as the service spells it, every hyperparameter given."""
        hyper = {**hyperparameters, **self.hyperparameters.model_dump(exclude_none=True)}
        inner: dict[str, Any] = {"grader": self.grader.model_dump(exclude_none=True)}
        if hyper:
            inner["hyperparameters"] = hyper
        if self.response_format is not None:
            inner["response_format"] = self.response_format
        return {"type": "reinforcement", "reinforcement": inner}


def _template_strings(grader: BaseModel, prefix: str = "grader") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(grader, (StringCheckGrader, TextSimilarityGrader)):
        out += [(f"{prefix}.input", grader.input), (f"{prefix}.reference", grader.reference)]
    elif isinstance(grader, ScoreModelGrader):
        out += [(f"{prefix}.input[{i}].content", m.content) for i, m in enumerate(grader.input)]
    elif isinstance(grader, MultiGrader):
        for key, inner in grader.graders.items():
            out += _template_strings(inner, f"{prefix}.graders.{key}")
    return out


def _check_reference(ref: str, where: str) -> None:
    if not _PATH.match(ref):
        raise ValueError(f"{where}: template {{{{{ref}}}}} is not a namespace.field path (no array indexing)")
    namespace, _, path = ref.partition(".")
    if namespace not in NAMESPACES or not path:
        raise ValueError(f"{where}: template {{{{{ref}}}}} must start with item. or sample. (the how-to's namespaces)")
    if namespace == "sample" and path.split(".")[0] not in SAMPLE_FIELDS:
        raise ValueError(f"{where}: {{{{{ref}}}}}: the sample namespace has {', '.join(SAMPLE_FIELDS)}")


def _item_paths(text: str) -> list[tuple[str, ...]]:
    """The `{{item.a.b}}` templates of one string, as paths (`("a", "b")`)."""
    paths = []
    for _, ref, _ in TEMPLATE.findall(text):
        namespace, _, path = ref.partition(".")
        if namespace == "item" and path:
            paths.append(tuple(path.split(".")))
    return paths


def item_fields(grader: BaseModel) -> list[tuple[str, ...]]:
    """Every `{{item.a.b}}` the grader reads, as paths (`("a", "b")`), in first-seen order."""
    seen: dict[tuple[str, ...], None] = {}
    for _, text in _template_strings(grader):
        seen.update(dict.fromkeys(_item_paths(text)))
    return list(seen)


def reference_field(grader: BaseModel) -> tuple[str, ...] | None:
    """The item field the grader compares a sample with: the `{{item.<path>}}` in the `reference` of a
    string_check or text_similarity grader (a multi grader's first inner one that has one). None when there is
    no such field (a score_model grader: its prompt may read any number of fields)."""
    references = (text for where, text in _template_strings(grader) if where.endswith(".reference"))
    return next((paths[0] for text in references if (paths := _item_paths(text))), None)


def spaced_templates(grader: BaseModel) -> list[str]:
    """Templates written with spaces inside the braces (`{{ item.answer }}`): the how-to's examples have them,
    Microsoft's fine-tuning skill says they fail ("no spaces inside braces"). A warning, not a rejection."""
    out = []
    for _, text in _template_strings(grader):
        out += [f"{{{{{lead}{ref}{trail}}}}}" for lead, ref, trail in TEMPLATE.findall(text) if lead or trail]
    return out


def unlisted_grader_models(grader: BaseModel) -> list[str]:
    """`score_model` models the how-to does not list as grader models (a warning: the list may have grown)."""
    if isinstance(grader, ScoreModelGrader):
        return [] if grader.model in GRADER_MODELS else [grader.model]
    if isinstance(grader, MultiGrader):
        return [m for inner in grader.graders.values() for m in unlisted_grader_models(inner)]
    return []


def check_calculate_output(formula: str, names: set[str]) -> None:
    """A multi grader's `calculate_output`: the grader keys, numbers, + - * / ^ and the how-to's functions."""
    try:
        tree = ast.parse(formula.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"calculate_output {formula!r} is not an expression: {exc.msg}") from None
    allowed_ops = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names and node.id not in CALCULATE_FUNCTIONS:
                raise ValueError(
                    f"calculate_output names {node.id!r}, which is neither a grader key ({', '.join(sorted(names))}) "
                    f"nor one of {', '.join(sorted(CALCULATE_FUNCTIONS))}"
                )
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in CALCULATE_FUNCTIONS:
                known = ", ".join(sorted(CALCULATE_FUNCTIONS))
                raise ValueError(f"calculate_output calls something other than {known}")
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            if not isinstance(node.op, allowed_ops):
                raise ValueError(f"calculate_output uses an operator other than + - * / ^: {formula!r}")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise ValueError(f"calculate_output has a constant that is not a number: {node.value!r}")
        elif not isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
            raise ValueError(f"calculate_output {formula!r} may use grader keys, numbers, + - * / ^ and functions only")
