"""Blob trigger: each new blob version in the drop container becomes a run.

received -> validating -> importing, or -> rejected with the validator's line-numbered report.

The dropped blob is only ever read (with an ETag condition, so a blob overwritten mid-read is noticed).
Outputs go to the runs container (report, record) and the staging container (split files): never under the
watched path. A blob named `*.validation.jsonl` is a validation companion, not a run: `data.jsonl` pairs
with `data.validation.jsonl` when it exists, or with the blob named by metadata `validation_blob`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from typing import IO

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, ContentSettings

from shared import admission, artifacts, costs, rft
from shared.evalspec import Evaluation
from shared.heldout import HeldOut, hold_out_test_set
from shared.imports import ensure_imports
from shared.models_check import check_spec
from shared.names import (
    InvalidName,
    check_blob_name,
    companion_name,
    is_folder_marker,
    is_profile_name,
    is_test_companion,
    is_validation_companion,
    test_companion_name,
)
from shared.runs import (
    BlobRef,
    ImportSlot,
    RunError,
    RunFiles,
    RunRecord,
    RunSource,
    RunSpec,
    RunState,
    ValidationSummary,
    derive_run_id,
)
from shared.services import Services
from shared.settings import Settings
from shared.spec import (
    COMPLETION_MODELS,
    SpecError,
    build_spec,
    metadata_overrides,
    parse_profile,
    profile_blob_name,
    spec_warnings,
)
from shared.telemetry import in_run
from shared.validation import Issue, SplitResult, ValidationOptions, ValidationReport, split_examples, validate
from shared.validation.split import MIN_PER_SIDE, estimate_after_split

log = logging.getLogger(__name__)

TEST_SET_MISSING = (
    "the run asks for an evaluation but has no held-out test set: drop a <name>.test.jsonl companion first, name "
    "one with blob metadata test_blob, or set test_split (a fraction held out by example hash)"
)
RFT_NEEDS_VALIDATION = (
    "reinforcement fine-tuning needs a validation file as well as a training file (the RFT how-to: 'Both a "
    "training and a validation dataset must be provided'): upload <name>.validation.jsonl first, name one with "
    "metadata validation_blob, or give 20 or more examples and a validation_split above 0"
)
BLOB_CHANGED = "the blob was overwritten while it was being read; the new version is a run of its own"
_SPOOL_BYTES = 8 * 1024 * 1024


def handle_new_blob(services: Services, blob: BlobClient) -> RunRecord | None:
    """The blob trigger's work. Safe to run any number of times for the same blob version, concurrently."""
    name, container = blob.blob_name, blob.container_name
    if is_validation_companion(name) or is_test_companion(name):
        log.info("%s/%s is a validation or test companion file, not a run", container, name)
        return None
    try:
        props = blob.get_blob_properties()
    except ResourceNotFoundError:
        log.warning("%s/%s disappeared before it could be read; nothing to do", container, name)
        return None
    if is_folder_marker(props.metadata):
        log.info("%s/%s is a folder marker (hdi_isfolder), not a run", container, name)
        return None
    version = props.version_id or str(props.etag)
    run_id = derive_run_id(container, name, version)
    source = RunSource(
        container=container, blob_name=name, etag=str(props.etag), version_id=props.version_id, size=props.size
    )
    store = services.store
    record, _, created = store.create(RunRecord.new(run_id, source))
    log.info("run %s: %s for %s/%s", run_id, "created" if created else "seen again", container, name)
    if record.state == RunState.IMPORTING:
        ensure_imports(services, run_id)
        return store.get(run_id)
    if record.state not in (RunState.RECEIVED, RunState.VALIDATING):
        return record
    try:
        return in_run(run_id, None, _ingest, services, blob, props, run_id)
    except Exception as exc:
        # Keep the reason on the run: if every retry fails, the timer ends the run with it (not "see the logs").
        store.note(run_id, "ingest_error", f"{type(exc).__name__}: {str(exc)[:300]}", attempt=True)
        raise


def _ingest(services: Services, blob: BlobClient, props: BlobProperties, run_id: str) -> RunRecord:
    name, container = blob.blob_name, blob.container_name
    store = services.store
    metadata = {k.lower(): v for k, v in (props.metadata or {}).items()}  # keys match in any case
    try:
        spec = resolve_spec(services, name, metadata)
    except SpecError as exc:
        return services.store.end(run_id, RunState.REJECTED, "invalid_spec", str(exc))
    spec_problem = check_spec(services.aoai, spec)
    if spec_problem is not None:
        return services.store.end(run_id, RunState.REJECTED, spec_problem.code, spec_problem.message)

    try:
        validation_blob = _find_validation_blob(services, container, name, metadata)
    except SpecError as exc:
        return services.store.end(run_id, RunState.REJECTED, "validation_file_missing", str(exc))
    try:
        test_blob = _find_test_blob(services, container, name, metadata)
    except SpecError as exc:
        return services.store.end(run_id, RunState.REJECTED, "test_file_missing", str(exc))
    if spec.evaluation is not None and test_blob is None and spec.test_split == 0:
        return services.store.end(run_id, RunState.REJECTED, "test_set_missing", TEST_SET_MISSING)

    _, unknown = metadata_overrides(metadata)

    def start_validating(r: RunRecord) -> None:
        r.spec = spec
        r.source.validation_blob = validation_blob
        r.source.test_blob = test_blob
        for code, message in spec_warnings(spec):
            r.warn(code, message)
        if unknown:
            r.warn(
                "unknown_metadata",
                f"blob metadata not understood, ignored: {', '.join(sorted(unknown))} (see the run spec keys)",
            )

    record, _ = store.advance(
        run_id, (RunState.RECEIVED, RunState.VALIDATING), RunState.VALIDATING, f"model {spec.model}", start_validating
    )
    if record.state != RunState.VALIDATING:
        return record

    try:
        training, validation = _pin(services, blob, props, validation_blob)
    except ResourceModifiedError:
        return services.store.end(run_id, RunState.FAILED, "blob_changed", BLOB_CHANGED)
    pinned = _client(services, training)
    report, sha256 = _validate(services, pinned, _client(services, validation) if validation else None, spec)
    summary = _summary(report)
    problem = _format_problem(report, spec) if report.valid else None
    held_out: HeldOut | None = None
    if report.valid and not problem and (test_blob is not None or spec.test_split > 0):
        held_out, test_problem = _hold_out_test_set(services, pinned, run_id, spec, container, test_blob)
        problem = test_problem
    document = report.model_dump(mode="json")
    if held_out is not None:
        document["test_set"] = held_out.report
    store.put_artifact(
        run_id,
        artifacts.VALIDATION_REPORT,
        json.dumps(document, indent=2),
        artifacts.content_type(artifacts.VALIDATION_REPORT),
    )
    if not report.valid or problem:
        message = problem or _rejection_message(report)

        def reject(r: RunRecord) -> None:
            r.validation = summary
            r.source.sha256 = sha256
            r.error = RunError(code="validation_failed", message=message)

        note = f"validation_failed: {message}"[:500]
        return store.advance(run_id, (RunState.VALIDATING,), RunState.REJECTED, note, reject)[0]

    if report.format == "preference" and spec.method != "dpo":
        spec = spec.model_copy(update={"method": "dpo"})
        spec_problem = check_spec(services.aoai, spec)  # DPO needs the preview api-version and a DPO model
        if spec_problem is not None:
            return services.store.end(run_id, RunState.REJECTED, spec_problem.code, spec_problem.message)

    training_source = pinned
    if held_out is not None and held_out.rest is not None:
        training = held_out.rest  # the test split's remainder: the test examples are never trained on
        training_source = services.blobs.get_blob_client(training.container, training.name)
    split_skipped = None
    trained_examples = report.examples
    if held_out is not None and held_out.rest is not None:  # the test examples are not trained on
        trained_examples -= int(held_out.report.get("examples", 0))
    if validation_blob is None and spec.validation_split > 0:
        staged, split = _stage_split(services, training_source, run_id, spec.validation_split)
        if staged is not None:
            training, validation = staged  # staging blobs are the run's own: no snapshot needed
            trained_examples = split.train_examples
            if report.estimate is not None and report.tokens is not None:  # estimate what is trained on
                report = report.model_copy(update={"estimate": estimate_after_split(
                    report.estimate, report.tokens.billed_per_epoch, split, n_epochs=spec.hyperparameters.n_epochs
                )})
                document["estimate"] = report.estimate.model_dump(mode="json") if report.estimate else None
                store.put_artifact(
                    run_id,
                    artifacts.VALIDATION_REPORT,
                    json.dumps(document, indent=2),
                    artifacts.content_type(artifacts.VALIDATION_REPORT),
                )
                summary = _summary(report)
        else:
            split_skipped = (
                f"no validation split: holding out {spec.validation_split:g} would leave "
                f"{split.train_examples} training and {split.valid_examples} validation examples, and every "
                f"uploaded file needs at least {MIN_PER_SIDE}; training on all {report.examples}"
            )
    if spec.method == "reinforcement" and validation is None:  # before anything is uploaded
        message = RFT_NEEDS_VALIDATION + (f" ({split_skipped})" if split_skipped else "")

        def no_validation(r: RunRecord) -> None:
            r.spec, r.validation = spec, summary
            r.error = RunError(code="validation_file_required", message=message)

        return store.advance(run_id, (RunState.VALIDATING,), RunState.REJECTED,
                             f"validation_file_required: {message}"[:500], no_validation)[0]
    files = RunFiles(
        training=ImportSlot(blob=training, filename=import_filename(run_id, "training")),
        validation=ImportSlot(blob=validation, filename=import_filename(run_id, "validation") if validation else None),
        test=ImportSlot(blob=held_out.items, filename=import_filename(run_id, "test")) if held_out else ImportSlot(),
    )

    cost = _estimate_cost(services, report, spec, trained_examples)
    too_dear = costs.over_budget(cost, spec.max_training_cost)
    unbounded = hosting_limit(spec, cost)
    refusal = ("cost_limit", too_dear) if too_dear else ("hosting_limit", unbounded) if unbounded else None
    if refusal is not None:  # before anything is uploaded
        code, why = refusal

        def refuse(r: RunRecord) -> None:
            r.spec, r.validation, r.cost = spec, summary, cost
            r.error = RunError(code=code, message=why or "")

        return store.advance(run_id, (RunState.VALIDATING,), RunState.REJECTED, f"{code}: {why}"[:500], refuse)[0]

    def start_importing(r: RunRecord) -> None:
        r.cost = cost
        r.spec = spec
        r.validation = summary
        r.source.sha256 = sha256
        r.files = files
        if spec.evaluation is not None:
            r.evaluation = Evaluation(
                status="pending",
                test_examples=int(held_out.report["examples"]) if held_out else 0,
                graders=spec.evaluation.labels(),
            )
        for warning in report.warnings[:5]:
            r.warn(warning.code, _issue_text(warning))
        if split_skipped:
            r.warn("no_validation_split", split_skipped)

    # Admission: import now only when the resource has room and nobody waits ahead (shared/admission.py).
    candidate = store.get(run_id).model_copy(update={"spec": spec, "files": files})
    decision = admission.request(services, candidate, admission.need_of(services, candidate))
    admission.log_decision(run_id, decision)
    what = f"{report.examples} examples, format {report.format}"
    if not decision.admitted:

        def start_waiting(r: RunRecord) -> None:
            start_importing(r)
            r.waiting = admission.wait_info(decision)

        note = f"{what}; waits for room on the resource (position {decision.position}): {decision.reason}"
        return store.advance(run_id, (RunState.VALIDATING,), RunState.WAITING, note[:500], start_waiting)[0]
    record, _ = store.advance(run_id, (RunState.VALIDATING,), RunState.IMPORTING, what, start_importing)
    if record.state == RunState.IMPORTING:
        ensure_imports(services, run_id)
        record = store.get(run_id)
    return record


def _pin(
    services: Services, blob: BlobClient, props: BlobProperties, validation_blob: str | None
) -> tuple[BlobRef, BlobRef | None]:
    """Pin the content: a snapshot of exactly the version this event is about (the blob itself is untouched).

    Validation, the split and the import all read the snapshot, so what was validated is what is trained on.
    Raises ResourceModifiedError when the blob changed since the event (the new version is a run of its own).
    """
    container, name = blob.container_name, blob.blob_name
    snapshot = str(blob.create_snapshot(etag=props.etag, match_condition=MatchConditions.IfNotModified)["snapshot"])
    training = BlobRef(container=container, name=name, snapshot=snapshot)
    if not validation_blob:
        return training, None
    companion_snapshot = str(services.blobs.get_blob_client(container, validation_blob).create_snapshot()["snapshot"])
    return training, BlobRef(container=container, name=validation_blob, snapshot=companion_snapshot)


def _client(services: Services, ref: BlobRef) -> BlobClient:
    return services.blobs.get_blob_client(ref.container, ref.name, snapshot=ref.snapshot)


# --- spec -----------------------------------------------------------------------------------------------------
def resolve_spec(services: Services, blob_name: str, metadata: dict[str, str]) -> RunSpec:
    try:  # every name that becomes a path is checked before anything is read with it
        check_blob_name(blob_name)
        if metadata.get("validation_blob"):
            check_blob_name(metadata["validation_blob"], what="metadata validation_blob")
    except InvalidName as exc:
        raise SpecError(str(exc)) from None
    explicit = metadata.get("profile")
    folder = blob_name.split("/", 1)[0] if "/" in blob_name else None
    name = explicit or (folder if folder and is_profile_name(folder) else None)
    profile = None
    if name:
        data = services.store.get_artifact_at(profile_blob_name(name))
        if data is not None:
            profile = parse_profile(name, data)
        elif explicit:
            raise SpecError(
                f"profile {name!r} was asked for (blob metadata 'profile') but "
                f"{services.settings.runs_container}/{profile_blob_name(name)} does not exist"
            )
    return build_spec(services.settings, metadata=metadata, profile_name=name if profile else None, profile=profile)


def _format_problem(report: ValidationReport, spec: RunSpec) -> str | None:
    is_completion_model = any(spec.model.startswith(m) for m in COMPLETION_MODELS)
    if report.format == "completion" and not is_completion_model:
        return (
            f"the file is in prompt/completion format, which only {' and '.join(COMPLETION_MODELS)} accept; "
            f"the run's model is {spec.model}. Convert it to chat format (python -m shared.cli convert) or "
            "choose a completion model"
        )
    if report.format in ("chat", "preference") and is_completion_model:
        return f"{spec.model} trains on prompt/completion data, but the file is in {report.format} format"
    return None


# --- validation -------------------------------------------------------------------------------------------------
def _find_validation_blob(services: Services, container: str, name: str, metadata: dict[str, str]) -> str | None:
    """The validation companion: named by metadata (must exist), else `<stem>.validation.jsonl` if present."""
    named = metadata.get("validation_blob")
    client = services.blobs.get_container_client(container)
    if named:
        if not client.get_blob_client(named).exists():
            raise SpecError(
                f"metadata validation_blob names {container}/{named}, which does not exist: upload it first"
            )
        return named
    companion = companion_name(name)
    return companion if client.get_blob_client(companion).exists() else None


def _find_test_blob(services: Services, container: str, name: str, metadata: dict[str, str]) -> str | None:
    """The held-out test set: named by metadata `test_blob` (must exist), else `<stem>.test.jsonl` if present."""
    named = metadata.get("test_blob")
    client = services.blobs.get_container_client(container)
    if named:
        try:
            check_blob_name(named, what="metadata test_blob")
        except InvalidName as exc:
            raise SpecError(str(exc)) from None
        if not client.get_blob_client(named).exists():
            raise SpecError(f"metadata test_blob names {container}/{named}, which does not exist: upload it first")
        return named
    companion = test_companion_name(name)
    return companion if client.get_blob_client(companion).exists() else None


def _hashing(chunks: Iterator[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _validate(
    services: Services, training_blob: BlobClient, validation_blob: BlobClient | None, spec: RunSpec
) -> tuple[ValidationReport, str]:
    digest = hashlib.sha256()
    training = _hashing(training_blob.download_blob().chunks(), digest)
    validation = validation_blob.download_blob().chunks() if validation_blob is not None else None
    options = validation_options(services.settings, spec)
    report = validate(training, validation=validation, model=spec.model, options=options)
    return report, digest.hexdigest()


def validation_options(settings: Settings, spec: RunSpec) -> ValidationOptions:
    """The rules a run's files are validated by: the training and validation files, and the test file too (an RFT
    run's test examples are RFT examples, with the grader's fields, not chat examples with an assistant reply)."""
    return ValidationOptions(
        allow_unknown_model=True,  # check_spec found it in the service's model list
        max_bytes=settings.max_file_bytes,
        price_per_million_tokens=settings.price_per_million_training_tokens,
        n_epochs=spec.hyperparameters.n_epochs,
        method=spec.method,
        grader_fields=tuple(rft.item_fields(spec.reinforcement.grader)) if spec.reinforcement else (),
    )


def _summary(report: ValidationReport) -> ValidationSummary:
    return ValidationSummary(
        valid=report.valid,
        format=report.format,
        examples=report.examples,
        errors=report.error_count,
        warnings=report.warning_count,
        billed_tokens=report.estimate.billed_tokens if report.estimate else None,
        first_errors=[_issue_text(e) for e in report.errors[:5]],
    )


def _issue_text(issue: Issue) -> str:
    where = "validation file " if issue.file == "validation" else ""
    at = f"{where}line {issue.line}: " if issue.line else (f"{where}: " if where else "")
    return f"{at}[{issue.code}] {issue.message}"


def _rejection_message(report: ValidationReport) -> str:
    head = "; ".join(_issue_text(e) for e in report.errors[:3])
    more = report.error_count - min(3, len(report.errors))
    tail = f" (and {more} more; the full report is validation.json beside the run)" if more > 0 else ""
    return f"the training data is invalid: {head}{tail}"


def _hold_out_test_set(
    services: Services, pinned: BlobClient, run_id: str, spec: RunSpec, container: str, test_blob: str | None
) -> tuple[HeldOut | None, str | None]:
    """(the held-out test set, or the reason it is unusable)."""
    test_client = None
    if test_blob is not None:
        snapshot = str(services.blobs.get_blob_client(container, test_blob).create_snapshot()["snapshot"])
        test_client = services.blobs.get_blob_client(container, test_blob, snapshot=snapshot)
    return hold_out_test_set(services, pinned, run_id, spec, test_client,
                             validation_options(services.settings, spec))


# --- staging ----------------------------------------------------------------------------------------------------
def import_filename(run_id: str, kind: str) -> str:
    """The name a run's file is imported under: derived from the run, so a lost answer can be found by it."""
    return f"{run_id}-{kind}.jsonl"


def _estimate_cost(
    services: Services, report: ValidationReport, spec: RunSpec, trained_examples: int
) -> costs.CostEstimate:
    s = services.settings
    return costs.estimate(
        costs.price_table(s.price_table_file),
        model=spec.model,
        training_type=spec.training_type,
        examples=report.examples,
        trained_examples=trained_examples,
        billed_per_epoch=report.tokens.billed_per_epoch if report.tokens else 0,
        n_epochs=spec.hyperparameters.n_epochs,
        flat_price=s.price_per_million_training_tokens,
        sku=spec.deployment.sku if spec.deployment.enabled else None,
        max_hosting_hours=spec.max_hosting_hours,
    )


def _stage_split(
    services: Services, blob: BlobClient, run_id: str, fraction: float
) -> tuple[tuple[BlobRef, BlobRef] | None, SplitResult]:
    """Split the file by hash into staging blobs; (None, result) when a side would be too small to upload."""
    staging = services.settings.staging_container
    with (
        tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as train_out,
        tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as valid_out,
    ):
        chunks = blob.download_blob().chunks()
        result = split_examples(chunks, train_out, valid_out, fraction=fraction)
        if not result.usable():  # both files are uploaded: the same >= 10 rule as any validated file
            return None, result
        names = (f"{run_id}/training.jsonl", f"{run_id}/validation.jsonl")
        for stream, blob_name in ((train_out, names[0]), (valid_out, names[1])):
            _upload(services, staging, blob_name, stream)
    return (BlobRef(container=staging, name=names[0]), BlobRef(container=staging, name=names[1])), result


def _upload(services: Services, container: str, blob_name: str, stream: IO[bytes]) -> None:
    stream.seek(0)
    services.blobs.get_blob_client(container, blob_name).upload_blob(
        stream, overwrite=True, content_settings=ContentSettings(content_type="application/jsonl")
    )


def hosting_limit(spec: RunSpec, cost: costs.CostEstimate) -> str | None:
    """Why `max_hosting_hours` cannot be kept for this run (rejected before any upload), or None.

    The retention timer deletes a deployment the pipeline made for the run once it has been up that many hours
    (shared/retention.py), so the hours are bounded, except where the run would deploy and nothing would ever
    delete it: `max_hosting_hours` 0 with deploying on, or `serve_as` (the model is promoted onto a serving
    deployment that the pipeline never deletes on a timer)."""
    hours = spec.max_hosting_hours
    if hours is None or not spec.deployment.enabled:
        return None
    priced = (f" (estimated hosting {cost.estimated_hosting:.2f} {cost.currency} for {hours:g} hours)"
              if cost.estimated_hosting is not None else "")
    if hours == 0:
        return "max_hosting_hours is 0 but the run deploys: set deploy=false to train without a deployment"
    if spec.serve_as:
        return (f"max_hosting_hours {hours:g}{priced} cannot be kept: the model would be promoted onto the serving "
                f"deployment {spec.serve_as}, which the pipeline never deletes on a timer; drop serve_as (the run "
                "gets a deployment of its own) or max_hosting_hours")
    return None
