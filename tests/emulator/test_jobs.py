"""Fine-tuning jobs through the openai SDK: lifecycle, events, checkpoints, results, errors, api-version spellings."""
from __future__ import annotations

import csv
import io
import re
from typing import Any

import httpx
import pytest
import tiktoken
from openai import AzureOpenAI, BadRequestError, NotFoundError

from shared.epochs import default_epochs
from tests.emulator.conftest import (
    GA,
    LEGACY,
    PREVIEW,
    chat_jsonl,
    chat_lines,
    create_job,
    jsonl,
    make_client,
    processed_file,
    upload,
    wait_for,
    wait_job,
)
from tests.harness.emulator import EmulatorProcess

FT_MODEL_RE = re.compile(r"^gpt-4o-mini-2024-07-18\.ft-[0-9a-f]{32}-shared$")


def test_job_runs_pending_running_succeeded(aoai: AzureOpenAI) -> None:
    training = processed_file(aoai)
    job = create_job(aoai, training, seed=11)
    assert job.id.startswith("ftjob-") and len(job.id) == 6 + 32
    assert job.status == "pending"
    assert job.hyperparameters.n_epochs == -1  # unresolved until the run starts
    seen: list[str] = []

    def poll() -> Any:
        current = aoai.fine_tuning.jobs.retrieve(job.id)
        seen.append(current.status)
        if current.status == "running":
            assert current.estimated_finish is not None and current.estimated_finish >= current.created_at
        return current

    final = wait_for(poll, lambda j: j.status == "succeeded", every=0.05)
    assert seen.index("pending") < seen.index("running") < seen.index("succeeded")
    assert final.estimated_finish is None and final.finished_at >= final.created_at
    # auto epochs: the one rule (shared.epochs) the cost estimate uses too: 100 // 12 = 8 for 12 examples
    assert final.hyperparameters.n_epochs == default_epochs(12) == 8
    assert final.hyperparameters.batch_size == 1
    assert final.result_files and final.result_files[0].startswith("file-")
    assert final.fine_tuned_model.startswith("gpt-4o-mini-2024-07-18.ft-")
    assert final.seed == 11


def test_trained_tokens_are_counted_from_the_data(trained: dict[str, Any]) -> None:
    job = trained["job"]
    enc = tiktoken.get_encoding("o200k_base")
    per_epoch = 0
    for line in chat_lines(12):
        per_epoch += 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in line["messages"])
    assert job.trained_tokens == per_epoch * 4
    assert FT_MODEL_RE.match(job.fine_tuned_model)
    assert job.hyperparameters.n_epochs == 4 and job.hyperparameters.batch_size == 2


def test_events_newest_first_with_sdk_auto_paging(aoai: AzureOpenAI, trained: dict[str, Any]) -> None:
    job = trained["job"]
    first_page = aoai.fine_tuning.jobs.list_events(job.id, limit=5)
    assert len(first_page.data) == 5 and first_page.has_more is True
    events = list(aoai.fine_tuning.jobs.list_events(job.id, limit=5))  # auto-paging follows `after`
    messages = [e.message for e in events]
    # As real event streams run: the results file and the billing come after "Job succeeded.".
    assert messages[:3] == [f"Training tokens billed: {job.trained_tokens}",
                            f"Completed results file: {job.result_files[0]}", "Job succeeded."]
    assert messages[-1] == f"Validating training file: {trained['training_file']}"
    assert len({e.id for e in events}) == len(events)
    for expected in ("Job enqueued. Waiting for jobs ahead to complete.", "Job started.", "Model Evaluation Passed.",
                     f"Completed results file: {job.result_files[0]}", f"Training tokens billed: {job.trained_tokens}"):
        assert expected in messages
    metrics = [e for e in events if e.type == "metrics"]
    assert [e.data["step"] for e in reversed(metrics)] == list(range(1, 25))  # 12 examples / batch 2 x 4 epochs
    assert all(e.message.startswith(f"Step {e.data['step']}: training loss=") for e in metrics)
    full = [e.data for e in metrics if e.data["full_valid_loss"] is not None]
    assert [d["step"] for d in reversed(full)] == [6, 12, 18, 24]  # epoch ends
    created = [e.created_at for e in events]
    assert created == sorted(created, reverse=True)


def test_checkpoints_only_the_last_three_epochs(emulator: EmulatorProcess, aoai: AzureOpenAI,
                                                trained: dict[str, Any]) -> None:
    job = trained["job"]  # 4 epochs: the service keeps the last three (the final one is the model itself)
    checkpoints = list(aoai.fine_tuning.jobs.checkpoints.list(job.id, limit=2))
    assert [c.step_number for c in checkpoints] == [24, 18, 12]
    page = _raw(emulator, "GET", f"/openai/fine_tuning/jobs/{job.id}/checkpoints").json()
    assert page["has_more"] is False and len(page["data"]) == 3
    newest, *older = checkpoints
    assert newest.fine_tuned_model_checkpoint == job.fine_tuned_model  # the plain fine-tuned model name
    for c in older:
        assert c.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{c.step_number}"
    for raw, c in zip(page["data"], checkpoints, strict=True):
        assert c.id.startswith("ftchkpt-") and len(c.id) == 8 + 32
        assert c.fine_tuning_job_id == job.id
        assert c.metrics.full_valid_loss is not None and c.metrics.train_loss > 0
        assert isinstance(raw["metrics"]["step"], float) and raw["metrics"]["step"] == c.step_number
    # The hex after .ft- is not the job's hex.
    assert job.fine_tuned_model.split(".ft-")[1][:32] != job.id.removeprefix("ftjob-")


def test_results_csv_current_columns_with_decreasing_loss(aoai: AzureOpenAI, trained: dict[str, Any]) -> None:
    job = trained["job"]
    results = aoai.files.retrieve(job.result_files[0])
    assert results.purpose == "fine-tune-results" and results.status == "processed"
    assert results.filename == "results.csv"
    rows = list(csv.DictReader(io.StringIO(aoai.files.content(results.id).text)))
    assert list(rows[0]) == ["step", "train_loss", "train_mean_token_accuracy", "valid_loss",
                             "validation_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy"]
    assert [int(r["step"]) for r in rows] == list(range(1, 25))
    losses = [float(r["train_loss"]) for r in rows]
    assert sum(losses[:4]) / 4 > 2 * sum(losses[-4:]) / 4
    assert any(r["valid_loss"] == "" for r in rows) and any(r["valid_loss"] != "" for r in rows)
    assert [int(r["step"]) for r in rows if r["full_valid_loss"]] == [6, 12, 18, 24]
    accuracy = [float(r["train_mean_token_accuracy"]) for r in rows]
    assert accuracy[-1] > accuracy[0]


def test_same_seed_and_data_give_the_same_run(aoai: AzureOpenAI) -> None:
    training = processed_file(aoai, chat_jsonl(10))
    jobs = [create_job(aoai, training, seed=1234) for _ in range(2)]
    other = create_job(aoai, training, seed=999)
    finals = [wait_job(aoai, j.id) for j in (*jobs, other)]
    csvs = [aoai.files.content(f.result_files[0]).text for f in finals]
    assert csvs[0] == csvs[1] != csvs[2]
    assert finals[0].trained_tokens == finals[1].trained_tokens == finals[2].trained_tokens


def test_list_jobs_paginates(aoai: AzureOpenAI) -> None:
    training = processed_file(aoai)
    created = [create_job(aoai, training).id for _ in range(3)]
    page = aoai.fine_tuning.jobs.list(limit=2)
    assert len(page.data) == 2 and page.has_more is True
    assert [j.id for j in page.data] == created[::-1][:2]  # newest first
    everything = [j.id for j in aoai.fine_tuning.jobs.list(limit=2)]
    assert set(created) <= set(everything) and len(everything) == len(set(everything))


def _raw(emulator: EmulatorProcess, method: str, path: str, version: str = GA, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{emulator.base_url}{path}", params={"api-version": version},
                         headers={"api-key": emulator.api_key or ""}, **kwargs)


@pytest.mark.parametrize("model", ["gpt-4o-2024-05-13", "text-embedding-3-small", "gpt-5-imaginary"])
def test_model_that_cannot_be_fine_tuned(emulator: EmulatorProcess, aoai: AzureOpenAI, model: str) -> None:
    training = processed_file(aoai)
    response = _raw(emulator, "POST", "/openai/fine_tuning/jobs", json={"model": model, "training_file": training})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The specified base model does not support fine-tuning."
    assert response.json()["error"]["code"] == "invalidPayload"


def test_file_not_processed_yet(aoai: AzureOpenAI) -> None:
    pending = upload(aoai, chat_jsonl())
    with pytest.raises(BadRequestError) as info:
        create_job(aoai, pending.id)
    assert info.value.status_code == 400
    assert info.value.body["message"] == (  # type: ignore[index]
        f"The input file '{pending.id}' is in 'pending' state. Only files with status 'Processed' are accepted")


@pytest.mark.parametrize("suffix", ["x" * 41, "bad suffix", "émoji"])
def test_bad_suffix(aoai: AzureOpenAI, suffix: str) -> None:
    training = processed_file(aoai)
    with pytest.raises(BadRequestError) as info:
        create_job(aoai, training, suffix=suffix)
    assert info.value.body["param"] == "suffix"  # type: ignore[index]


def test_bad_hyperparameters_and_seed(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    training = processed_file(aoai)
    base = {"model": "gpt-4o-mini-2024-07-18", "training_file": training}
    for extra, param in [({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
                         ({"hyperparameters": {"batch_size": 1000}}, "hyperparameters.batch_size"),
                         ({"hyperparameters": {"learning_rate_multiplier": -1}},
                          "hyperparameters.learning_rate_multiplier"),
                         ({"seed": 2**40}, "seed")]:
        response = _raw(emulator, "POST", "/openai/fine_tuning/jobs", json={**base, **extra})
        assert response.status_code == 400, extra
        assert response.json()["error"]["param"] == param
    dpo_base = {**base, "model": "gpt-4.1-mini-2025-04-14"}
    for extra, param in [({"trainingType": "Premium"}, "trainingType"), ({"method": {"type": "dpo"}}, "training_file")]:
        response = _raw(emulator, "POST", "/openai/fine_tuning/jobs", PREVIEW, json={**dpo_base, **extra})
        assert response.status_code == 400, extra
        assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("field", ["trainingType", "method", "integrations", "prompt_loss_weight"])
def test_ga_refuses_fields_it_does_not_define(emulator: EmulatorProcess, aoai: AzureOpenAI, field: str) -> None:
    """The GA create body has six fields; the emulator answers 400 for any other (the specs are silent)."""
    training = processed_file(aoai)
    value = {"trainingType": "Standard", "method": {"type": "supervised"}, "integrations": [],
             "prompt_loss_weight": 0.1}[field]
    body = {"model": "gpt-4o-mini-2024-07-18", "training_file": training, field: value}
    response = _raw(emulator, "POST", "/openai/fine_tuning/jobs", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalidPayload" and error["param"] == field
    assert "2024-10-21" in error["message"]
    before = emulator.health()["jobs"]
    preview = _raw(emulator, "POST", "/openai/fine_tuning/jobs", PREVIEW, json=body)
    if field == "prompt_loss_weight":
        assert preview.status_code == 400  # not in the preview body either
    else:
        assert preview.status_code == 201, preview.text
        assert emulator.health()["jobs"] == before + 1


def test_missing_training_type_when_the_service_insists(emulator: EmulatorProcess) -> None:
    preview = make_client(emulator, PREVIEW)
    training = processed_file(preview)
    emulator.set_scenario("require_training_type")
    with pytest.raises(BadRequestError) as info:
        preview.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=training)
    assert info.value.body["message"] == "The specified base model does not support fine-tuning."  # type: ignore[index]
    job = create_job(preview, training, extra_body={"trainingType": "globalstandard"})
    assert job.status == "pending"
    assert job.model_extra is not None and job.model_extra["trainingType"] == "GlobalStandard"


def test_dpo_on_preview_with_preference_data(emulator: EmulatorProcess) -> None:
    client = make_client(emulator, PREVIEW)
    records = [{"input": {"messages": [{"role": "user", "content": f"Say hi number {i}"}]},
                "preferred_output": [{"role": "assistant", "content": "Hello!"}],
                "non_preferred_output": [{"role": "assistant", "content": "Go away."}]} for i in range(10)]
    training = processed_file(client, jsonl(records))
    job = client.fine_tuning.jobs.create(
        model="gpt-4.1-mini-2025-04-14", training_file=training,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2}}},
        extra_body={"trainingType": "Standard"})
    assert job.method.type == "dpo"
    final = wait_job(client, job.id)
    assert final.status == "succeeded"
    assert final.method.dpo.hyperparameters.beta == 0.2
    assert final.hyperparameters.n_epochs == 2


def test_continuous_fine_tuning_from_a_fine_tuned_model(aoai: AzureOpenAI, trained: dict[str, Any]) -> None:
    parent = trained["job"].fine_tuned_model
    job = create_job(aoai, processed_file(aoai), model=parent)
    assert job.model == parent
    final = wait_job(aoai, job.id)
    assert final.status == "succeeded"
    assert re.match(r"^gpt-4o-mini-2024-07-18\.ft-[0-9a-f]{32}$", final.fine_tuned_model)
    models = {m.id: m for m in aoai.models.list()}
    assert models[final.fine_tuned_model].model_extra["fine_tune"] == final.id  # type: ignore[index]


def test_cancel_is_terminal_and_spelled_per_version(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    training = processed_file(aoai)
    emulator.set_scenario("stuck_queued")
    job = create_job(aoai, training)
    cancelled = aoai.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert make_client(emulator, LEGACY).fine_tuning.jobs.retrieve(job.id).status == "canceled"
    events = [e.message for e in aoai.fine_tuning.jobs.list_events(job.id)]
    assert events[0] == "Job cancelled."
    with pytest.raises(BadRequestError) as info:
        aoai.fine_tuning.jobs.cancel(job.id)
    assert info.value.body["code"] == "unexpectedEntityState"  # type: ignore[index]
    aoai.fine_tuning.jobs.with_raw_response.retrieve(job.id)
    response = _raw(emulator, "DELETE", f"/openai/fine_tuning/jobs/{job.id}")
    assert response.status_code == 204
    with pytest.raises(NotFoundError):
        aoai.fine_tuning.jobs.retrieve(job.id)


def test_status_spellings_per_api_version(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    training = processed_file(aoai)
    # A job long enough that nothing moves on its own while the first reads are made (a loaded machine
    # cannot race it); then the emulator's clock is moved past the validating phase instead of waiting.
    emulator.configure(job_seconds=40_000)
    job = create_job(aoai, training)
    assert make_client(emulator, LEGACY).fine_tuning.jobs.retrieve(job.id).status == "notRunning"
    v1 = httpx.get(f"{emulator.base_url}/openai/v1/fine_tuning/jobs/{job.id}",
                   headers={"api-key": emulator.api_key or ""}).json()
    assert v1["status"] == "validating_files"
    assert v1["hyperparameters"]["n_epochs"] == "auto" and v1["result_files"] == []
    assert aoai.fine_tuning.jobs.retrieve(job.id).result_files is None
    total = 40_000 * emulator.health()["time_scale"]
    emulator.advance_clock(total * 0.2)  # past validating (15 %), inside queued (15-30 %)
    queued = httpx.get(f"{emulator.base_url}/openai/v1/fine_tuning/jobs/{job.id}",
                       headers={"api-key": emulator.api_key or ""}).json()
    assert queued["status"] == "queued"
    assert make_client(emulator, LEGACY).fine_tuning.jobs.retrieve(job.id).status == "notRunning"
    emulator.advance_clock(total)
    assert aoai.fine_tuning.jobs.retrieve(job.id).status == "succeeded"


def test_pause_and_resume_are_preview_only(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    preview = make_client(emulator, PREVIEW)
    emulator.configure(job_seconds=20)
    job = create_job(preview, processed_file(aoai))
    running = wait_for(lambda: preview.fine_tuning.jobs.retrieve(job.id), lambda j: j.status == "running")
    assert running.estimated_finish is not None
    response = _raw(emulator, "POST", f"/openai/fine_tuning/jobs/{job.id}/pause")
    assert response.status_code == 404 and response.json() == {"error": {"code": "404",
                                                                         "message": "Resource not found"}}
    assert preview.fine_tuning.jobs.pause(job.id).status == "pausing"
    assert preview.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert preview.fine_tuning.jobs.retrieve(job.id).estimated_finish is None
    assert preview.fine_tuning.jobs.resume(job.id).status == "resuming"
    assert preview.fine_tuning.jobs.retrieve(job.id).status == "running"
    messages = [e.message for e in preview.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert messages[:2] == ["Job resumed.", "Job paused."] or "Job paused." in messages
    preview.fine_tuning.jobs.cancel(job.id)


def test_rai_failure_by_marker_and_by_admin(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    marked = processed_file(aoai, chat_jsonl(12, marker="rai_failure"))
    clean = processed_file(aoai)
    for training, harms in ((marked, "hate_fairness, self_harm, violence"), (clean, "SelfHarm")):
        if training == clean:
            emulator.set_scenario("rai_failure", harm_types=["SelfHarm"])
        final = wait_job(aoai, create_job(aoai, training).id)
        assert final.status == "failed"
        # The sample message of the safety-evaluation how-to, word for word.
        assert final.error.message == (
            f"The provided training data failed RAI checks for harm types: [{harms}]. Please fix the data and try "
            "again.")
        assert final.fine_tuned_model is None and final.trained_tokens is None
        events = list(aoai.fine_tuning.jobs.list_events(final.id))
        assert events[0].level == "error" and events[0].message == final.error.message


def test_job_failure_halfway(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    emulator.set_scenario("job_failure")
    final = wait_job(aoai, create_job(aoai, processed_file(aoai), hyperparameters={"n_epochs": 2}).id)
    assert final.status == "failed" and final.error.code == "internalFailure"
    checkpoints = list(aoai.fine_tuning.jobs.checkpoints.list(final.id))
    assert [c.step_number for c in checkpoints] == [12]  # epoch 1 of 2 finished before the failure at step 12


def test_stuck_queued_by_marker(emulator: EmulatorProcess, aoai: AzureOpenAI) -> None:
    job = create_job(aoai, processed_file(aoai, chat_jsonl(12, marker="stuck_queued")))
    emulator.advance_clock(600)  # far longer than a whole normal job, without waiting for it
    current = aoai.fine_tuning.jobs.retrieve(job.id)
    assert current.status == "pending" and current.estimated_finish is None
    assert [e.message for e in aoai.fine_tuning.jobs.list_events(job.id)][0] == (
        "Job enqueued. Waiting for jobs ahead to complete.")
    assert aoai.fine_tuning.jobs.cancel(job.id).status == "cancelled"


def test_legacy_results_columns(emulator: EmulatorProcess) -> None:
    legacy = make_client(emulator, LEGACY)
    final = wait_job(legacy, create_job(legacy, processed_file(legacy), hyperparameters={"n_epochs": 1}).id)
    assert final.status == "succeeded"
    header = legacy.files.content(final.result_files[0]).text.splitlines()[0]
    assert header == ("step,elapsed_tokens,elapsed_examples,training_loss,training_sequence_accuracy,"
                      "training_token_accuracy,validation_loss,validation_sequence_accuracy,validation_token_accuracy")


def test_models_list_capabilities(aoai: AzureOpenAI, trained: dict[str, Any]) -> None:
    models = {m.id: m.model_extra for m in aoai.models.list()}
    for fine_tunable in ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14",
                         "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14", "o4-mini-2025-04-16",
                         "gpt-35-turbo-0125", "gpt-35-turbo-1106", "babbage-002", "davinci-002"):
        assert models[fine_tunable]["capabilities"]["fine_tune"] is True  # type: ignore[index]
    assert models["gpt-4o-2024-05-13"]["capabilities"]["fine_tune"] is False  # type: ignore[index]
    assert models["text-embedding-3-small"]["capabilities"]["embeddings"] is True  # type: ignore[index]
    tuned = models[trained["job"].fine_tuned_model]
    assert tuned["model"] == "gpt-4o-mini-2024-07-18" and tuned["fine_tune"] == trained["job"].id  # type: ignore[index]
