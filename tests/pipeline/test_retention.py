"""The retention policy (shared/retention.py) on Azurite + an emulator of this module's own (its clock is moved by
hours and days here): result files, artifacts, candidate deployments, serving deployments idle / superseded /
replaced / gone, max_hosting_hours; dry-run; two passes at once delete each object once (the emulator's log); a run
recorded before retention existed, found by the pass's backfill."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from shared.advance import tick
from shared.cli import main
from shared.evalspec import EvalProgress, EvalTarget
from shared.retention import PassReport, retention_pass
from shared.runs import DeploymentSpec, RetentionSpec, RunRecord, RunSource, RunSpec, RunState, utcnow
from shared.runstore import BACKFILL
from shared.services import Services
from shared.settings import settings_from_env
from shared.summary import run_summary
from tests.harness.emulator import EmulatorProcess, start_emulator
from tests.harness.old_records import write_as_before_retention
from tests.harness.pipeline import Driver, age_run, chat_lines
from tests.harness.waiting import wait_for

BASE = "gpt-4o-mini-2024-07-18"
ARM = "/providers/Microsoft.CognitiveServices/accounts/aoai-test/deployments/"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """Its own instance: these tests move the clock by days, which must not age other modules' objects."""
    with start_emulator() as emu:  # stopped when the module is done
        yield emu


@pytest.fixture(autouse=True)
def _fresh(emulator: EmulatorProcess) -> Iterator[None]:
    yield
    emulator.restore_config()


def _log_count(emulator: EmulatorProcess, since: int, method: str, path: str, status: str = "2") -> int:
    """Requests `METHOD ...PATH` answered with a status starting with `status` since the log offset `since`.

    The emulator logs a request after answering it: a marker request logged after ours makes the count complete."""
    marks = emulator.log_text().count("GET /_emulator/health ")
    emulator.health()
    wait_for(lambda: emulator.log_text().count("GET /_emulator/health ") > marks, "the emulator's request log")
    count = 0
    for line in emulator.log_text()[since:].splitlines():
        parts = line.split()
        at = next((i for i, p in enumerate(parts) if p.endswith(path) and i and parts[i - 1] == method), None)
        if at is not None and at + 1 < len(parts) and parts[at + 1].startswith(status):
            count += 1
    return count


def _twice_at_once(services: Services) -> list[PassReport]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda _: retention_pass(services), range(2)))


def _deployed(services: Services, name: str, *, blob: str = "team.jsonl", spec: dict[str, Any] | None = None,
              deploy: bool = True) -> RunRecord:
    """A run that ended `deployed` with `name` serving the base model (a model the emulator deploys at once)."""
    run_id = f"{name}-{utcnow():%H%M%S%f}"[:50]
    record = RunRecord.new(run_id, RunSource(container="training-data", blob_name=blob, etag=run_id))
    record.spec = RunSpec(model=BASE, profile="team", deployment=DeploymentSpec(name=name), **(spec or {}))
    record.job.fine_tuned_model = BASE
    record.deployment.name, record.deployment.model = name, BASE
    record.deployment.provisioning_state = "Succeeded"
    for state in (RunState.VALIDATING, RunState.IMPORTING, RunState.TRAINING, RunState.SUCCEEDED,
                  RunState.MEASURING, RunState.DEPLOYING, RunState.DEPLOYED):
        record.transition(state, state.value)
    services.store.create(record)
    if deploy:
        assert services.deployments is not None
        services.deployments.create_or_update_and_wait(name, model_name=BASE, timeout=30)
    return record


def test_result_files_and_artifacts_are_deleted_once_after_a_dry_run_showed_them(
    driver: Driver, services: Services, emulator: EmulatorProcess, app_env: dict[str, str],
    capsys: pytest.CaptureFixture[str], tmp_path: Any,
) -> None:
    driver.drop("kept.jsonl", chat_lines(24), {"deploy": "false"})
    started = driver.blob_event("kept.jsonl")
    assert started is not None
    record = driver.run(started.id)
    assert record.state == RunState.TRAINED and record.metrics is not None and record.job.result_files
    result_file = record.job.result_files[0]
    # The imported training file is deleted by the tick once the job ended: once, as a retention entry.
    tick(services)
    record = services.store.get(record.id)
    imported = sorted(e.id for e in record.retention if e.target == "imported_file")
    own = sorted(slot.file_id for kind, slot in record.files.slots() if kind != "test" and slot.file_id)
    assert imported == own and own
    assert all(_log_count(emulator, 0, "DELETE", f"/openai/files/{file_id}") == 1 for file_id in own)
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": app_env}))
    since = len(emulator.log_text())

    assert main(["cleanup", "--policy", "--dry-run", "--settings", str(settings)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["RUN", "OBJECT", "ACTION", "REASON"]
    assert f"result_file {result_file}" in table and "would delete" in table and "metrics stored" in table
    assert _log_count(emulator, since, "DELETE", f"/openai/files/{result_file}", "") == 0  # a dry run sends nothing
    assert services.store.get(record.id).retention == record.retention  # unchanged by the dry run

    reports = _twice_at_once(services)
    outcomes = sorted(row.outcome for report in reports for row in report.rows)
    assert "deleted" in outcomes and outcomes.count("deleted") == 1
    assert _log_count(emulator, since, "DELETE", f"/openai/files/{result_file}") == 1
    after = services.store.get(record.id)
    [entry] = [e for e in after.retention if e.target == "result_file"]
    assert entry.id == result_file and entry.action == "delete" and entry.removed_at is not None
    assert [h.note for h in after.history if h.note.startswith("retention: deleted result_file")] != []
    assert retention_pass(services).rows == []  # nothing left to do: no request either
    assert _log_count(emulator, since, "DELETE", f"/openai/files/{result_file}", "") == 1

    # artifacts_days: the run's blobs go 30 days after it ended; the record stays.
    env = dict(app_env, RETENTION_ARTIFACTS_DAYS="30")
    pruning = Services.from_settings(settings_from_env(env), env=env)
    names = {b.name for b in services.store.container.list_blobs(name_starts_with=f"runs/{record.id}/")}
    assert {f"runs/{record.id}/metrics.json", f"runs/{record.id}/results.csv"} <= names
    assert retention_pass(pruning).rows == []  # ended today: kept
    age_run(services, record.id, timedelta(days=31))
    reports = _twice_at_once(pruning)
    assert sorted(r.outcome for rep in reports for r in rep.rows).count("deleted") == 1
    left = {b.name for b in services.store.container.list_blobs(name_starts_with=f"runs/{record.id}/")}
    assert left == {f"runs/{record.id}/run.json"}
    pruned = services.store.get(record.id)
    [artifacts] = [e for e in pruned.retention if e.target == "artifacts"]
    assert set(artifacts.deleted) == names - left and "ended 31 days ago" in artifacts.reason
    assert not pruned.retains and retention_pass(pruning).runs == 0  # its index tag says it holds nothing now


def test_max_hosting_hours_deletes_the_deployment_on_the_services_clock_once(
    services: Services, emulator: EmulatorProcess, app_env: dict[str, str], tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = _deployed(services, "hosted-2h", spec={"max_hosting_hours": 2})
    assert retention_pass(services).rows == []
    emulator.advance_clock(2 * 3600 + 60)
    since = len(emulator.log_text())
    reports = _twice_at_once(services)
    assert sorted(r.outcome for rep in reports for r in rep.rows).count("deleted") == 1
    assert _log_count(emulator, since, "DELETE", ARM + "hosted-2h") == 1
    after = services.store.get(record.id)
    assert after.state == RunState.DEPLOYED  # the end state stays; the deployment reads Deleted
    assert after.deployment.provisioning_state == "Deleted" and after.deployment.deleted_at is not None
    assert "max_hosting_hours 2" in (after.deployment.deleted_reason or "")
    summary = run_summary(after)
    assert summary.serving is False and summary.deployment_state == "Deleted"
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": app_env}))
    assert main(["runs", "--settings", str(settings)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(record.id))
    assert "deployed (not serving)" in row and "deployment hosted-2h deleted: up 2.0 hours" in row
    assert retention_pass(services).rows == []
    assert _log_count(emulator, since, "DELETE", ARM + "hosted-2h", "") == 1


def test_idle_serving_deployment_is_reported_and_deleted_only_when_the_policy_says_so(
    services: Services, emulator: EmulatorProcess
) -> None:
    reported = _deployed(services, "idle-report", blob="a.jsonl")
    deleted = _deployed(services, "idle-delete", blob="b.jsonl", spec={"retention": RetentionSpec(delete_serving=True)})
    assert retention_pass(services).rows == []
    emulator.advance_clock(8 * 86400)
    since = len(emulator.log_text())
    first = {(r.action.run_id, r.outcome) for r in retention_pass(services).rows}
    assert first == {(reported.id, "reported"), (deleted.id, "deleted")}
    again = {(r.action.run_id, r.outcome) for r in retention_pass(services).rows}
    assert again == {(reported.id, "already reported")}  # reported on every pass, written once
    assert _log_count(emulator, since, "DELETE", ARM + "idle-delete") == 1
    assert _log_count(emulator, since, "DELETE", ARM + "idle-report", "") == 0
    kept = services.store.get(reported.id)
    [entry] = kept.retention
    assert entry.action == "report" and entry.reason.startswith("idle: unchanged for 8.0 days")
    assert kept.deployment.deleted_at is None and run_summary(kept).serving is True
    assert services.store.get(deleted.id).deployment.provisioning_state == "Deleted"


def test_superseded_replaced_and_gone_deployments(services: Services, emulator: EmulatorProcess) -> None:
    assert services.deployments is not None
    older = _deployed(services, "sup-old", blob="same.jsonl")
    newer = _deployed(services, "sup-new", blob="same.jsonl")
    age_run(services, older.id, timedelta(days=10))
    age_run(services, newer.id, timedelta(days=8))
    replaced = _deployed(services, "replaced", blob="r.jsonl")
    services.deployments.create_or_update_and_wait("replaced", model_name="gpt-4.1-2025-04-14", timeout=30)
    gone = _deployed(services, "gone-away", blob="g.jsonl", deploy=False)
    since = len(emulator.log_text())
    rows = {r.action.run_id: r for r in retention_pass(services).rows}
    assert set(rows) == {older.id, replaced.id, gone.id}
    assert rows[older.id].outcome == "reported" and f"superseded by run {newer.id}" in rows[older.id].action.reason
    assert rows[replaced.id].outcome == "recorded"
    assert "serves gpt-4.1-2025-04-14 now" in rows[replaced.id].action.reason
    assert rows[gone.id].outcome == "recorded" and "not on the resource" in rows[gone.id].action.reason
    assert _log_count(emulator, since, "DELETE", ARM + "replaced", "") == 0  # it serves another model: kept
    for run_id in (replaced.id, gone.id):
        assert run_summary(services.store.get(run_id)).serving is False
    assert {r.action.run_id for r in retention_pass(services).rows} == {older.id}  # recorded once, reported again


def test_candidate_deployment_left_by_an_evaluation_is_deleted(services: Services, emulator: EmulatorProcess) -> None:
    """The evaluation deletes its candidates at the verdict (tests/pipeline/test_evaluation.py counts that
    DELETE); one still on the resource (say the delete was lost) is deleted by retention, once."""
    assert services.deployments is not None
    record = _deployed(services, "ev1-left", blob="e.jsonl")
    record = services.store.get(record.id)
    services.store.update(record.id, lambda r: setattr(r, "eval", EvalProgress(targets=[
        EvalTarget(role="candidate", key="final", model=BASE, deployment="ev1-left", temporary=True)])) or True,
        on_ended=True)
    services.store.update(record.id, lambda r: setattr(r.deployment, "name", None) or True, on_ended=True)
    since = len(emulator.log_text())
    rows = retention_pass(services).rows
    assert [(r.action.target, r.outcome) for r in rows] == [("candidate_deployment", "deleted")]
    assert _log_count(emulator, since, "DELETE", ARM + "ev1-left") == 1
    assert retention_pass(services).rows == []


def test_max_hosting_hours_that_cannot_be_kept_rejects_before_any_upload(
    driver: Driver, emulator: EmulatorProcess
) -> None:
    since = len(emulator.log_text())
    driver.drop("forever.jsonl", chat_lines(24), {"max_hosting_hours": "5", "serve_as": "contoso-serving"})
    record = driver.blob_event("forever.jsonl")
    assert record is not None and record.state == RunState.REJECTED
    assert record.error is not None and record.error.code == "hosting_limit"
    assert "serving deployment contoso-serving" in record.error.message
    assert "max_hosting_hours 5" in record.error.message
    driver.drop("zero.jsonl", chat_lines(24), {"max_hosting_hours": "0"})
    zero = driver.blob_event("zero.jsonl")
    assert zero is not None and zero.error is not None and zero.error.code == "hosting_limit"
    assert _log_count(emulator, since, "POST", "/openai/files/import", "") == 0
    assert _log_count(emulator, since, "POST", "/openai/files", "") == 0


def test_a_run_recorded_before_retention_existed_is_found_after_the_upgrade(
    services: Services, emulator: EmulatorProcess, app_env: dict[str, str], tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An upgrade covers existing state: a record the previous version wrote (no `retain` tag) is found by the
    pass's backfill, shown by a dry run that changes nothing, and its deployment past max_hosting_hours is deleted
    once by two passes at once; the backfill then costs nothing but its cursor."""
    record = _deployed(services, "pre-upgrade", spec={"max_hosting_hours": 2})
    etag = write_as_before_retention(services.store, services.store.get(record.id))
    blob = services.store.container.get_blob_client(f"runs/{record.id}/run.json")
    assert "retain" not in blob.get_blob_tags() and services.store.retained_run_ids() == []  # invisible to the query
    emulator.advance_clock(2 * 3600 + 60)
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": app_env}))
    since = len(emulator.log_text())

    assert main(["cleanup", "--policy", "--dry-run", "--settings", str(settings)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(record.id))
    assert "deployment pre-upgrade" in row and "would delete" in row and "max_hosting_hours 2" in row
    assert "index backfill: 1 blobs listed, 1 records without the retention tags (would re-tag 1)" in out
    assert _log_count(emulator, since, "DELETE", ARM + "pre-upgrade", "") == 0  # a dry run sends nothing
    assert blob.get_blob_properties().etag == etag and "retain" not in blob.get_blob_tags()  # nor writes

    reports = _twice_at_once(services)
    assert sorted(r.outcome for rep in reports for r in rep.rows).count("deleted") == 1
    assert _log_count(emulator, since, "DELETE", ARM + "pre-upgrade") == 1
    assert all(rep.backfill is not None and rep.backfill.listed == 1 for rep in reports)
    assert sum(rep.backfill.retagged for rep in reports if rep.backfill) == 1  # one of the two wrote it
    after = services.store.get(record.id)
    assert after.state == RunState.DEPLOYED and after.deployment.provisioning_state == "Deleted"
    assert blob.get_blob_tags()["retain"] == "0"  # tagged now: it holds nothing more
    again = retention_pass(services)
    assert again.rows == [] and again.runs == 0 and again.backfill is not None and again.backfill.done
    assert again.backfill.listed == 0  # done: one read of its cursor
    assert _log_count(emulator, since, "DELETE", ARM + "pre-upgrade", "") == 1


def test_a_failing_backfill_does_not_stop_the_pass(
    services: Services, emulator: EmulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The sweep is an addition: its cursor unreadable, the tagged runs are still handled (and it is logged)."""
    record = _deployed(services, "tagged-2h", spec={"max_hosting_hours": 2})
    services.store.container.upload_blob(BACKFILL, b"{not json", overwrite=True)
    emulator.advance_clock(2 * 3600 + 60)
    since = len(emulator.log_text())
    report = retention_pass(services)
    assert report.backfill is None and [(r.action.run_id, r.outcome) for r in report.rows] == [(record.id, "deleted")]
    assert _log_count(emulator, since, "DELETE", ARM + "tagged-2h") == 1
    assert "the index backfill failed" in caplog.text
