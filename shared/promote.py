"""Promotion: a serving deployment (`serve_as`) moved to a run's model, its lineage, `promote` and `rollback`.

The serving deployment keeps its name (clients call it by name); what changes is its `properties.model`, by
the same ARM PUT (`Deployments_CreateOrUpdate`) that created it: docs/evaluation.md says what the sources say
about changing the model of an existing deployment. Every change is appended to the deployment's lineage,
`serving/<deployment>.json` in the runs container (ETag'd read-modify-write), and the run that was promoted
keeps `record.promotion` = {deployment, model, previous_model, at}.

- automatic: a run with `serve_as` whose evaluation passed is deployed onto that deployment (shared/deploy.py);
- `promote RUN_ID [--deployment NAME]`: serve a chosen run's model (its evaluated candidate, else its model);
- `rollback DEPLOYMENT`: serve the model the deployment served before its last change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from shared.aoai import BadRequestError, Deployment
from shared.evalspec import Promotion
from shared.names import InvalidName, check_profile_name
from shared.runs import RunRecord, utcnow
from shared.runstore import ConcurrentUpdate
from shared.services import Services

LINEAGE_PREFIX = "serving/"
log = logging.getLogger(__name__)


class PromotionError(RuntimeError):
    """The promotion or rollback cannot be done (the message says why)."""


def lineage_blob(deployment: str) -> str:
    try:
        return f"{LINEAGE_PREFIX}{check_profile_name(deployment)}.json"
    except InvalidName as exc:
        raise PromotionError(f"deployment name {deployment!r}: {exc}") from None


def lineage(services: Services, deployment: str) -> dict[str, Any]:
    data = services.store.get_artifact_at(lineage_blob(deployment))
    document: dict[str, Any] = json.loads(data) if data else {"deployment": deployment, "history": []}
    return document


def _update_lineage(services: Services, deployment: str, mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    def change(current: Any) -> dict[str, Any]:
        document: dict[str, Any] = current if isinstance(current, dict) else {"deployment": deployment, "history": []}
        mutate(document)
        return document

    try:
        written: dict[str, Any] = services.store.update_document(lineage_blob(deployment), change)
    except ConcurrentUpdate as exc:
        raise PromotionError(f"lineage of {deployment}: {exc}") from exc
    return written


def _append(services: Services, deployment: str, entry: dict[str, Any]) -> dict[str, Any]:
    def mutate(document: dict[str, Any]) -> None:
        history = document.setdefault("history", [])
        last = history[-1] if history else None
        if last is not None and last.get("model") == entry["model"] and last.get("run_id") == entry.get("run_id"):
            return  # the same promotion delivered twice: one entry
        if not history and entry.get("previous_model"):
            history.append({"model": entry["previous_model"], "run_id": None, "action": "found", "at": entry["at"]})
        history.append(entry)

    return _update_lineage(services, deployment, mutate)


def note_previous(services: Services, run_id: str, deployment: str, previous_model: str | None) -> None:
    """Before the PUT that moves `deployment` to the run's model: what it served (kept on the run)."""

    def mutate(r: RunRecord) -> bool:
        if r.promotion is not None and r.promotion.deployment == deployment:
            return False  # a repeated delivery: the first one saw the model served before this run
        r.promotion = Promotion(deployment=deployment, model="", previous_model=previous_model)
        return True

    services.store.update(run_id, mutate)


def record_promotion(services: Services, run_id: str, deployment: str, model: str, *, action: str = "promote"
                     ) -> RunRecord:
    at = utcnow().isoformat()

    def mutate(r: RunRecord) -> bool:
        previous = r.promotion.previous_model if r.promotion and r.promotion.deployment == deployment else None
        if r.promotion is not None and r.promotion.model == model and r.promotion.deployment == deployment:
            return False
        r.promotion = Promotion(deployment=deployment, model=model, previous_model=previous, at=at)
        return True

    record, _ = services.store.update(run_id, mutate, on_ended=True)
    previous = record.promotion.previous_model if record.promotion else None
    _append(services, deployment, {"model": model, "run_id": run_id, "action": action, "at": at,
                                   "previous_model": previous})
    return record


def replace_model(services: Services, deployment: str, model: str, *, sku: str, capacity: int) -> Deployment:
    """`deployment` serves `model` afterwards: an in-place PUT of `properties.model`; when ARM refuses to change
    the model of an existing deployment (400), the route of the Terraform provider (model name ForceNew):
    delete the deployment and create it again under the same name (clients keep calling that name; it does not
    answer while it is provisioned again)."""
    assert services.deployments is not None
    wait = services.settings.deploy_wait_seconds
    try:
        return services.deployments.create_or_update_and_wait(
            deployment, model_name=model, sku_name=sku, capacity=capacity, timeout=wait
        )
    except BadRequestError as exc:
        log.warning("deployment %s: the model cannot be changed in place (%s): deleting and creating it again",
                    deployment, exc.code)
    services.deployments.delete_and_wait(deployment, timeout=wait)
    return services.deployments.create_or_update_and_wait(
        deployment, model_name=model, sku_name=sku, capacity=capacity, timeout=wait
    )


def _serve(services: Services, deployment: str, model: str, record: RunRecord | None) -> str | None:
    """PUT `model` onto `deployment`; returns the model it served before (None: it did not exist)."""
    if services.deployments is None:
        raise PromotionError("set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZURE_OPENAI_ACCOUNT_NAME")
    existing = services.deployments.get(deployment)
    previous = existing.model_name if existing is not None else None
    if previous == model:
        return previous
    sku, capacity = "Standard", 1
    if existing is not None and existing.sku is not None:
        sku, capacity = existing.sku.name or sku, existing.sku.capacity or capacity
    elif record is not None and record.spec is not None:
        sku, capacity = record.spec.deployment.sku, record.spec.deployment.capacity
    replace_model(services, deployment, model, sku=sku, capacity=capacity)
    return previous


def run_model(record: RunRecord) -> str | None:
    if record.evaluation is not None and record.evaluation.passed and record.evaluation.candidate.model:
        return record.evaluation.candidate.model
    return record.deployment.model or record.job.fine_tuned_model


def promote(services: Services, run_id: str, deployment: str | None = None) -> dict[str, Any]:
    """Serve the run's model on `deployment` (default: the run's serve_as, else its own deployment)."""
    record = services.store.get(run_id)
    model = run_model(record)
    if not model:
        raise PromotionError(f"run {run_id} has no model to serve (state {record.state.value})")
    target = deployment or (record.spec.serve_as if record.spec else None) or record.deployment.name
    if not target:
        raise PromotionError(f"run {run_id} names no serving deployment: pass --deployment NAME")
    previous = _serve(services, target, model, record)
    note_previous(services, run_id, target, previous)
    record_promotion(services, run_id, target, model)
    return {"deployment": target, "model": model, "previous_model": previous, "run_id": run_id}


def rollback(services: Services, deployment: str) -> dict[str, Any]:
    """Serve again the model `deployment` served before its last change (from its lineage)."""
    history = lineage(services, deployment).get("history") or []
    if not history:
        raise PromotionError(f"deployment {deployment} has no lineage: nothing to roll back to")
    current = history[-1]
    previous = current.get("previous_model")
    if not previous:
        earlier = [h for h in history[:-1] if h.get("model") != current.get("model")]
        previous = earlier[-1]["model"] if earlier else None
    if not previous:
        raise PromotionError(f"deployment {deployment} served no other model before {current.get('model')}")
    _serve(services, deployment, previous, None)
    at = utcnow().isoformat()
    _append(services, deployment, {"model": previous, "run_id": None, "action": "rollback", "at": at,
                                   "previous_model": current.get("model")})
    return {"deployment": deployment, "model": previous, "previous_model": current.get("model")}
