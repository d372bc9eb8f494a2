"""Before anything is uploaded: can this resource train this spec? Checked against the service's own answers.

Three questions, each answered with the usual cause when the answer is no:

* **the api-version**: a spec that needs a preview-only field (`trainingType`, DPO's `method`) with no preview
  api-version configured is refused here, naming the setting (the client would refuse at job create, after the
  upload; see :mod:`shared.aoai.api_versions`);
* **the model**: `GET /models` must list it, and either as fine-tunable (`capabilities.fine_tune`) or as a
  fine-tuned model *of this resource* whose base is fine-tunable. The spec's `GET /models` example lists a
  fine-tuned model with `capabilities.fine_tune: false`, yet continuous fine-tuning from it is documented: a
  fine-tuned model is judged by that rule, not by its flag;
* **the method**: DPO only on the models the DPO how-to lists (and fine-tunes of them); reinforcement only on the
  RFT how-to's models, and those models (o4-mini) only with reinforcement; open-weight models supervised only.

Open-weight models (shared/open_weight.py) are listed by the catalogue with `capabilities.fine_tune: false`
although they can be fine-tuned (Microsoft's fine-tuning skill, platform gotcha 2): for them the flag is never
read; the shipped list decides, and the catalogue only has to list the model.

Sources: docs/azure-openai-contract.md.
"""

from __future__ import annotations

from typing import NamedTuple

from shared import open_weight, rft
from shared.aoai import AzureOpenAIClient, Model, UnsupportedFeatureError
from shared.runs import RunSpec
from shared.validation.model_limits import DPO_MODELS, supports_dpo

__all__ = ["SpecProblem", "check_spec"]


class SpecProblem(NamedTuple):
    """Why a spec cannot be trained here: a run error `code` and a message that says what to change."""

    code: str
    message: str


def check_spec(aoai: AzureOpenAIClient, spec: RunSpec) -> SpecProblem | None:
    """None when this resource can train `spec`; otherwise the first problem found (one GET /models at most)."""
    method = {"type": spec.method} if spec.method != "supervised" else None
    try:
        aoai.jobs.api_version_for_create(method=method, training_type=spec.training_type)
    except UnsupportedFeatureError as exc:
        return SpecProblem("api_version_lacks_feature", str(exc))
    if spec.method == "dpo" and not supports_dpo(spec.model):
        return SpecProblem(
            "method_not_supported",
            f"DPO (method dpo, or preference data) is not available for {spec.model}: the DPO how-to lists "
            f"{', '.join(DPO_MODELS)} and fine-tunes of them",
        )
    if spec.method == "reinforcement" and not rft.supports_rft(spec.model):
        return SpecProblem(
            "method_not_supported",
            f"reinforcement fine-tuning is not available for {spec.model}: the RFT how-to lists "
            f"{', '.join(rft.RFT_MODELS)}",
        )
    if spec.method != "reinforcement" and rft.rft_only(spec.model):
        return SpecProblem(
            "method_not_supported",
            f"{spec.model} is fine-tuned with reinforcement only (give a grader: reinforcement.grader or "
            f"metadata rft_grader); method {spec.method} is not available for it",
        )
    entry = open_weight.find(spec.model)
    if entry is not None and spec.method not in entry.methods:
        return SpecProblem(
            "method_not_supported",
            f"the open-weight model {entry.id} is fine-tuned with {', '.join(entry.methods)} only; method "
            f"{spec.method} is not available for it",
        )
    problem = check_model(aoai, spec.model)
    return SpecProblem("model_not_fine_tunable", problem) if problem is not None else None


def check_model(aoai: AzureOpenAIClient, model: str) -> str | None:
    """None when `model` can be fine-tuned here; otherwise which of the usual three causes it is."""
    models = list(aoai.models.list())
    by_id = {m.id: m for m in models}
    tunable = sorted(m.id for m in models if m.capabilities.fine_tune)
    found = by_id.get(model)
    if found is None:
        if ".ft-" in model:
            return (
                f"fine-tuned model {model!r} is not in this resource: continuous fine-tuning starts from a model "
                "trained in the same resource (check the id, or the resource the app points at)"
            )
        return (
            f"model {model!r} is not offered by this resource (wrong model id or version, or not available in "
            f"this region). Fine-tunable models here: {', '.join(tunable) or 'none'}"
        )
    if found.capabilities.fine_tune or open_weight.find(model) is not None:
        return None  # open-weight models: the catalogue's flag is wrong for them (see the module docstring)
    if _is_fine_tuned(found):
        base = by_id.get(found.model or "")
        if base is not None and base.capabilities.fine_tune:
            return None  # continuous fine-tuning: listed with fine_tune false, documented all the same
        return (
            f"fine-tuned model {model!r} is in this resource, but its base model {found.model!r} cannot be "
            f"fine-tuned here any more. Fine-tunable models here: {', '.join(tunable) or 'none'}"
        )
    return (
        f"model {model!r} exists in this resource but cannot be fine-tuned here. "
        f"Fine-tunable models here: {', '.join(tunable) or 'none'}"
    )


def _is_fine_tuned(model: Model) -> bool:
    """A fine-tuned model of this resource: it names its job (`fine_tune`) or its base (`model`)."""
    return bool(model.fine_tune) or (bool(model.model) and ".ft-" in model.id)
