"""Resolve a run's spec: blob metadata over a named profile over app settings.

- **App settings** give the defaults (`DEFAULT_BASE_MODEL`, `DEFAULT_VALIDATION_SPLIT`, ...).
- **A profile** is a JSON document `profiles/<name>.json` in the runs container, holding any subset of
  `RunSpec`'s fields. It is chosen by the blob metadata key `profile`, or else by the blob's first folder
  (`team-a/data.jsonl` -> profile `team-a`) when such a profile exists.
- **Blob metadata** overrides single fields with flat keys (metadata keys must be identifiers):
  `model`, `training_type`, `method`, `n_epochs`, `batch_size`, `learning_rate_multiplier`, `dpo_beta`,
  `rft_grader` (JSON), `reasoning_effort`, `compute_multiplier`, `eval_samples`, `eval_interval`, `seed`,
  `suffix`, `validation_split`, `priority`, `max_training_cost`, `max_hosting_hours`, `validation_blob`,
  `deploy` (true/false), `deployment_name`,
  `deployment_sku`, `deployment_capacity`, `deployment_target` (final|best_checkpoint), `deployment_source`,
  `gate_max_full_valid_loss`, `gate_max_valid_loss`, `gate_max_train_loss`, `gate_min_valid_token_accuracy`,
  `gate_min_train_token_accuracy`, `gate_allow_overfitting`, `gate_min_valid_reward`, `gate_max_reward_gap`,
  `test_split`, `test_blob`, `serve_as`,
  `eval_graders` (a JSON list), `eval_min_score`, `eval_min_improvement`, `eval_regression_tolerance`,
  `eval_compare_to`, `eval_checkpoints`.

A spec that does not parse is a `SpecError` naming each bad field and where it came from.

Open-weight models (shared/open_weight.py) take their training type, deployment SKU and capacity from the
open-weight data where the profile and the metadata say nothing (app settings are for Azure OpenAI models); a
training type or SKU the data does not allow is a rejection naming where it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from shared import open_weight, rft
from shared.names import InvalidName, check_profile_name
from shared.runs import RunSpec
from shared.settings import Settings

# Models that train on prompt/completion data (and answer on /completions); every other model is chat.
COMPLETION_MODELS = ("babbage-002", "davinci-002")

# metadata key -> path in the RunSpec document
METADATA_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "training_type": ("training_type",),
    "method": ("method",),
    "n_epochs": ("hyperparameters", "n_epochs"),
    "batch_size": ("hyperparameters", "batch_size"),
    "learning_rate_multiplier": ("hyperparameters", "learning_rate_multiplier"),
    "dpo_beta": ("dpo_beta",),
    "rft_grader": ("reinforcement", "grader"),
    "reasoning_effort": ("reinforcement", "hyperparameters", "reasoning_effort"),
    "compute_multiplier": ("reinforcement", "hyperparameters", "compute_multiplier"),
    "eval_samples": ("reinforcement", "hyperparameters", "eval_samples"),
    "eval_interval": ("reinforcement", "hyperparameters", "eval_interval"),
    "seed": ("seed",),
    "suffix": ("suffix",),
    "validation_split": ("validation_split",),
    "priority": ("priority",),
    "max_training_cost": ("max_training_cost",),
    "max_hosting_hours": ("max_hosting_hours",),
    "deploy": ("deployment", "enabled"),
    "deployment_name": ("deployment", "name"),
    "deployment_sku": ("deployment", "sku"),
    "deployment_capacity": ("deployment", "capacity"),
    "deployment_target": ("deployment", "target"),
    "deployment_source": ("deployment", "source"),
    "gate_max_full_valid_loss": ("gate", "max_full_valid_loss"),
    "gate_max_valid_loss": ("gate", "max_valid_loss"),
    "gate_max_train_loss": ("gate", "max_train_loss"),
    "gate_min_valid_token_accuracy": ("gate", "min_valid_token_accuracy"),
    "gate_min_train_token_accuracy": ("gate", "min_train_token_accuracy"),
    "gate_allow_overfitting": ("gate", "allow_overfitting"),
    "gate_min_valid_reward": ("gate", "min_valid_reward"),
    "gate_max_reward_gap": ("gate", "max_reward_gap"),
    "test_split": ("test_split",),
    "serve_as": ("serve_as",),
    "retention_delete_result_files": ("retention", "delete_result_files"),
    "retention_serving_days": ("retention", "serving_days"),
    "retention_delete_serving": ("retention", "delete_serving"),
    "retention_artifacts_days": ("retention", "artifacts_days"),
    "eval_graders": ("evaluation", "graders"),
    "eval_min_score": ("evaluation", "min_score"),
    "eval_min_improvement": ("evaluation", "min_improvement"),
    "eval_regression_tolerance": ("evaluation", "regression_tolerance"),
    "eval_compare_to": ("evaluation", "compare_to"),
    "eval_checkpoints": ("evaluation", "checkpoints"),
}
# Metadata keys that are not spec fields but are understood elsewhere.
OTHER_METADATA = frozenset({"profile", "validation_blob", "test_blob", "submitted_by", "hdi_isfolder"})


# The GA spec allows `suffix` up to 40 characters (FineTuningJobCreation.suffix, and the REST how-to); OpenAI's
# API reference said 18 for years and tools built on it may cut longer names: accepted, with a warning.
SUFFIX_ADVISED_LENGTH = 18


def spec_warnings(spec: RunSpec) -> list[tuple[str, str]]:
    """(code, message) for what the service accepts but may surprise: put on the run, never a rejection."""
    out: list[tuple[str, str]] = []
    if spec.suffix is not None and len(spec.suffix) > SUFFIX_ADVISED_LENGTH:
        out.append((
            "long_suffix",
            f"suffix {spec.suffix!r} has {len(spec.suffix)} characters: Azure accepts up to 40 (GA spec), but "
            f"OpenAI's API reference long said {SUFFIX_ADVISED_LENGTH} and tools may cut longer model names",
        ))
    entry = open_weight.find(spec.model)
    if entry is not None and spec.deployment.capacity < entry.min_capacity:
        out.append((
            "low_capacity",
            f"deployment_capacity {spec.deployment.capacity} is below {entry.min_capacity} for the open-weight model "
            f"{entry.id}: at low capacity its fine-tunes answer 'Failed to load LoRA' (Microsoft's fine-tuning "
            "skill, platform gotchas 5 and 6)",
        ))
    if spec.reinforcement is not None:
        spaced = rft.spaced_templates(spec.reinforcement.grader)
        if spaced:
            out.append((
                "grader_template_spaces",
                f"grader templates with spaces inside the braces ({', '.join(spaced[:3])}): Microsoft's fine-tuning "
                "skill reports they fail; write {{item.field}}",
            ))
        unlisted = rft.unlisted_grader_models(spec.reinforcement.grader)
        if unlisted:
            out.append((
                "grader_model_not_listed",
                f"score_model grader model {', '.join(unlisted)} is not among the RFT how-to's grader models "
                f"({', '.join(rft.GRADER_MODELS)}): the job may be refused",
            ))
    return out


class SpecError(ValueError):
    """The run spec is unusable; the message lists every problem and its origin."""


def profile_blob_name(name: str) -> str:
    """`profiles/<name>.json`; raises SpecError for a name that is not one plain segment."""
    try:
        return f"profiles/{check_profile_name(name)}.json"
    except InvalidName as exc:
        raise SpecError(str(exc)) from None


def defaults_from_settings(settings: Settings) -> dict[str, Any]:
    return {
        "model": settings.default_base_model,
        "training_type": settings.default_training_type or None,
        "validation_split": settings.default_validation_split,
        "deployment": {"sku": settings.default_deployment_sku, "capacity": settings.default_deployment_capacity},
    }


def metadata_overrides(metadata: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Flat blob metadata -> a nested partial spec, and the keys that mean nothing (reported as warnings)."""
    doc: dict[str, Any] = {}
    unknown: list[str] = []
    for raw_key, value in metadata.items():
        key = raw_key.lower()
        path = METADATA_FIELDS.get(key)
        if path is None:
            if key not in OTHER_METADATA:
                unknown.append(raw_key)
            continue
        target = doc
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return doc, unknown


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_profile(name: str, data: bytes) -> dict[str, Any]:
    """A profile document, strictly: every key must be a run-spec field at its place (nested as `RunSpec`).

    A flat metadata-style key (`n_epochs`, `gate_max_full_valid_loss`) or any unknown key is a SpecError naming
    the key and, when it is a known one misplaced, where it belongs.
    """
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise SpecError(f"profile {name!r} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(doc, dict):
        raise SpecError(f"profile {name!r} must be a JSON object of run-spec fields")
    problems = unknown_keys(RunSpec, doc)
    if problems:
        raise SpecError(f"profile {name!r}: " + "; ".join(problems))
    return doc


PROFILE_ONLY_BY_METADATA = frozenset({"profile"})
"""Spec fields a profile may not set (the profile is chosen by the blob, not by itself)."""


def unknown_keys(model: type[BaseModel], doc: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every key of `doc` that is not a field of `model` (recursively for nested models), each with a hint."""
    problems: list[str] = []
    for key, value in doc.items():
        where = f"{prefix}{key}"
        field = model.model_fields.get(key)
        if field is None or (not prefix and key in PROFILE_ONLY_BY_METADATA):
            problems.append(f"unknown key {where!r}" + _hint(key, prefix))
            continue
        nested = _model_of(field.annotation)
        if nested is not None and isinstance(value, Mapping):
            problems += unknown_keys(nested, value, f"{where}.")
    return problems


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _hint(key: str, prefix: str) -> str:
    path = METADATA_FIELDS.get(key.lower())
    if path is not None and ".".join(path) != f"{prefix}{key}":
        return f" (it belongs at {'.'.join(path)}: profiles nest keys as the run spec does; flat keys are for " \
               "blob metadata)"
    if key == "profile" and not prefix:
        return " (the profile is chosen by blob metadata 'profile' or the blob's folder)"
    known = ", ".join(sorted(RunSpec.model_fields)) if not prefix else "see the run spec"
    return f" (known: {known})"


def build_spec(
    settings: Settings,
    *,
    metadata: Mapping[str, str],
    profile_name: str | None = None,
    profile: Mapping[str, Any] | None = None,
) -> RunSpec:
    """Merge the three layers and check the result. Raises SpecError with every problem listed."""
    doc = defaults_from_settings(settings)
    if profile is not None:
        doc = merge(doc, profile)
        doc["profile"] = profile_name
    meta_doc, _unknown = metadata_overrides(metadata)
    doc = merge(doc, meta_doc)
    problems = _open_weight_rules(doc, meta_doc, profile)
    if problems:
        raise SpecError("the run spec is invalid: " + "; ".join(problems))
    for key in ("gate", "evaluation"):
        if isinstance(doc.get(key), dict) and not doc[key]:
            doc[key] = None
    try:
        return RunSpec.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if not loc:  # a rule across fields (RunSpec's own validators): the message says which
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            origin = _origin(err["loc"], meta_doc, profile)
            problems.append(f"{loc} = {err.get('input')!r}: {err['msg']} (from {origin})")
        raise SpecError("the run spec is invalid: " + "; ".join(problems)) from None


def _open_weight_rules(
    doc: dict[str, Any], meta_doc: Mapping[str, Any], profile: Mapping[str, Any] | None
) -> list[str]:
    """Fill in (in place) and check what an open-weight model must train and deploy with."""
    entry = open_weight.find(str(doc.get("model") or ""))
    if entry is None:
        return []
    problems = []
    source = f"{open_weight.DATA_FILE.name} ({open_weight.catalogue().date})"
    deployment = doc.setdefault("deployment", {})
    for loc, wanted, key in (
        (("training_type",), entry.training_type, "training_type"),
        (("deployment", "sku"), entry.deployment_sku, "deployment_sku"),
    ):
        given = _origin(loc, meta_doc, profile) != "app settings"
        target = deployment if loc[0] == "deployment" else doc
        value = target.get(loc[-1])
        if not given or value in (None, ""):
            target[loc[-1]] = wanted
        elif str(value).lower() != wanted.lower():
            problems.append(
                f"{key} = {value!r}: the open-weight model {entry.id} trains and deploys as {wanted} only "
                f"({source}) (from {_origin(loc, meta_doc, profile)})"
            )
        else:
            target[loc[-1]] = wanted
    if _origin(("deployment", "capacity"), meta_doc, profile) == "app settings":
        deployment["capacity"] = max(int(deployment.get("capacity") or 1), entry.min_capacity)
    return problems


def _origin(loc: tuple[Any, ...], meta_doc: Mapping[str, Any], profile: Mapping[str, Any] | None) -> str:
    def has(doc: Mapping[str, Any] | None) -> bool:
        cur: Any = doc
        for part in loc:
            if not isinstance(cur, Mapping) or part not in cur:
                return False
            cur = cur[part]
        return True

    if has(meta_doc):
        return "blob metadata"
    if has(profile):
        return "the profile"
    return "app settings"
