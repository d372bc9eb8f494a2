"""The Evals API of the emulator, driven by the official openai SDK (its `evals` resource parses every answer):
eval create/get/list/delete, runs with a `completions` data source over an uploaded file, output items,
preview api-version only, graders refused at creation, a run on a missing deployment fails."""
from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from openai import AzureOpenAI, BadRequestError, NotFoundError

from tests.emulator.conftest import GA, PREVIEW, TOPICS, deploy, make_client, wait_for
from tests.harness.emulator import EmulatorProcess

CRITERIA = [
    {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.reference}}",
     "operation": "eq"},
    {"type": "text_similarity", "name": "fuzzy", "input": "{{sample.output_text}}",
     "reference": "{{item.reference}}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.8},
]


@pytest.fixture
def preview(emulator: EmulatorProcess) -> AzureOpenAI:
    return make_client(emulator, api_version=PREVIEW)


def _items_file(client: AzureOpenAI) -> str:
    lines = [{"item": {"input": [{"role": "user", "content": f"A fact about the {topic}, please."}],
                       "reference": answer}} for topic, answer in TOPICS[:6]]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("items.jsonl", data, "application/jsonl"), purpose="evals")
    wait_for(lambda: client.files.retrieve(uploaded.id), lambda f: f.status == "processed")
    return uploaded.id


def _eval(client: AzureOpenAI, criteria: list[dict[str, Any]] | None = None) -> Any:
    return client.evals.create(
        name="held-out",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}, "include_sample_schema": True},
        testing_criteria=criteria or CRITERIA,  # type: ignore[arg-type]
        metadata={"run_id": "r1"},
    )


def test_runs_grade_a_fine_tuned_model_above_its_base(
    preview: AzureOpenAI, emulator: EmulatorProcess, trained: dict[str, Any], deployments: list[str]
) -> None:
    ft, base = "ev-ft-" + uuid.uuid4().hex[:6], "ev-base-" + uuid.uuid4().hex[:6]
    deployments += [ft, base]
    deploy(emulator, ft, trained["job"].fine_tuned_model)
    deploy(emulator, base, "gpt-4o-mini-2024-07-18")
    file_id = _items_file(preview)
    ev = _eval(preview)
    assert ev.id.startswith("eval_") and [c.name for c in ev.testing_criteria] == ["exact", "fuzzy"]  # type: ignore[union-attr]
    assert preview.evals.retrieve(ev.id).metadata == {"run_id": "r1"}
    emulator.freeze_clock()  # "not done yet" below holds however slow the machine (the clean-up lets it run)
    runs = {}
    for name, deployment in (("candidate", ft), ("baseline", base)):
        runs[name] = preview.evals.runs.create(
            ev.id, name=name,
            data_source={"type": "completions", "source": {"type": "file_id", "id": file_id},  # type: ignore[arg-type]
                         "input_messages": {"type": "item_reference", "item_reference": "item.input"},
                         "model": deployment},
        )
        assert runs[name].status == "queued"
    assert preview.evals.runs.output_items.list(runs["candidate"].id, eval_id=ev.id).data == []  # not done yet
    emulator.advance_clock(10)  # half a job's time: the runs are done
    done = {name: preview.evals.runs.retrieve(run.id, eval_id=ev.id) for name, run in runs.items()}
    assert done["candidate"].status == "completed" and done["candidate"].result_counts.total == 6
    assert done["candidate"].result_counts.passed == 6 and done["baseline"].result_counts.passed == 0
    per = {c.testing_criteria: c.passed for c in done["candidate"].per_testing_criteria_results}
    assert per == {"exact": 6, "fuzzy": 6}
    items = list(preview.evals.runs.output_items.list(runs["candidate"].id, eval_id=ev.id))
    assert len(items) == 6 and all(i.status == "pass" for i in items)
    assert items[0].sample.output[0].content == items[0].datasource_item["reference"]
    assert {r.name for r in items[0].results} == {"exact", "fuzzy"}
    listed = [r.id for r in preview.evals.runs.list(ev.id)]
    assert set(listed) == {r.id for r in runs.values()}
    preview.evals.delete(ev.id)
    with pytest.raises(NotFoundError):
        preview.evals.retrieve(ev.id)


def test_run_on_a_missing_deployment_fails_with_the_reason(preview: AzureOpenAI, emulator: EmulatorProcess) -> None:
    file_id = _items_file(preview)
    ev = _eval(preview)
    run = preview.evals.runs.create(
        ev.id, name="nowhere",
        data_source={"type": "completions", "source": {"type": "file_id", "id": file_id},  # type: ignore[arg-type]
                     "input_messages": {"type": "item_reference", "item_reference": "item.input"},
                     "model": "no-such-deployment"},
    )
    emulator.advance_clock(10)
    final = preview.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert final.status == "failed" and final.error is not None
    assert "no-such-deployment" in (final.error.message or "")


def test_unknown_graders_and_ga_api_version_are_refused(preview: AzureOpenAI, emulator: EmulatorProcess) -> None:
    with pytest.raises(BadRequestError):
        _eval(preview, [{"type": "string_check", "name": "x", "input": "a", "reference": "b", "operation": "regex"}])
    with pytest.raises(BadRequestError):
        _eval(preview, [{"type": "python", "name": "x", "source": "def nope(:"}])
    ga = make_client(emulator, api_version=GA)
    with pytest.raises(NotFoundError):
        ga.evals.list()
    listed = httpx.get(f"{emulator.base_url}/openai/v1/evals", headers={"api-key": emulator.api_key or ""})
    assert listed.status_code == 200 and listed.json()["object"] == "list"


def test_a_model_trained_on_tool_calls_calls_the_tool_and_the_tool_call_grader_sees_it(
    preview: AzureOpenAI, emulator: EmulatorProcess, deployments: list[str]
) -> None:
    from shared.evalspec import GraderSpec
    from shared.evalspec import testing_criterion as criterion_of
    from tests.emulator.conftest import create_job, processed_file, wait_job

    topics = [topic for topic, _ in TOPICS]

    def call(i: int) -> dict[str, Any]:
        return {"id": f"call_{i}", "type": "function",
                "function": {"name": "lookup_fact", "arguments": json.dumps({"topic": topics[i]})}}

    tools = [{"type": "function", "function": {"name": "lookup_fact", "parameters": {"type": "object"}}}]
    train = "".join(json.dumps({"messages": [
        {"role": "user", "content": f"Look up the {topics[i]} in the fact base."},
        {"role": "assistant", "tool_calls": [call(i)]}], "tools": tools}) + "\n" for i in range(len(topics)))
    job = create_job(preview, processed_file(preview, train.encode()), hyperparameters={"n_epochs": 2})
    emulator.advance_clock(120)
    assert wait_job(preview, job.id).status == "succeeded"
    ft, base = "ev-tool-" + uuid.uuid4().hex[:6], "ev-toolbase-" + uuid.uuid4().hex[:6]
    deployments += [ft, base]
    deploy(emulator, ft, preview.fine_tuning.jobs.retrieve(job.id).fine_tuned_model or "")
    deploy(emulator, base, "gpt-4o-mini-2024-07-18")
    lines = [{"item": {"input": [{"role": "user", "content": f"Please look up the {topics[i]} fact."}],
                       "reference": "", "reference_tool_calls": [call(i)]}} for i in range(6)]
    uploaded = preview.files.create(file=("tools.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode(),
                                          "application/jsonl"), purpose="evals")
    wait_for(lambda: preview.files.retrieve(uploaded.id), lambda f: f.status == "processed")
    criterion = criterion_of(GraderSpec(type="tool_call_match"), "tool call", judge="")
    ev = _eval(preview, [criterion])
    runs = {name: preview.evals.runs.create(
        ev.id, name=name,
        data_source={"type": "completions", "source": {"type": "file_id", "id": uploaded.id},  # type: ignore[arg-type]
                     "input_messages": {"type": "item_reference", "item_reference": "item.input"}, "model": dep})
        for name, dep in (("candidate", ft), ("baseline", base))}
    emulator.advance_clock(10)
    counts = {name: preview.evals.runs.retrieve(run.id, eval_id=ev.id).result_counts for name, run in runs.items()}
    assert counts["candidate"].passed == 6 and counts["baseline"].passed == 0
    item = next(iter(preview.evals.runs.output_items.list(runs["candidate"].id, eval_id=ev.id)))
    sample = item.to_dict()["sample"]
    assert sample["output"][0]["tool_calls"][0]["function"]["name"] == "lookup_fact"
    assert sample["output_tools"] == sample["output"][0]["tool_calls"]
