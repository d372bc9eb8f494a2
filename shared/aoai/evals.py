"""``/openai/evals``: evaluations, eval runs with a ``completions`` data source, and their output items.

The Evals API is a preview surface of the data plane: on the versioned surface every call here sends
``api-version=2025-04-01-preview`` (Azure OpenAI authoring reference, "Evaluation - Create / Getrun /
Getrunoutputitems"), whatever the client's own api-version; on the v1 surface none, and the ``aoai-evals:
preview`` header the v1 spec asks for (``specification/ai/data-plane/OpenAI.v1``). Creates are
non-idempotent (an ambiguous failure is reconciled by listing: evals by their ``metadata.run_id`` and name, runs
by name).

    evals = Evals(aoai)
    ev = evals.create(name=run_id, testing_criteria=[...], metadata={"run_id": run_id})
    run = evals.create_run(ev.id, name="baseline", model="gpt-4o-mini", file_id=test_file_id)
    evals.get_run(ev.id, run.id).status  # queued | in_progress | completed | failed | canceled
    for item in evals.output_items(ev.id, run.id): ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ._base import seg
from .api_versions import V1

if TYPE_CHECKING:
    from .client import AzureOpenAIClient

EVALS_API_VERSION = "2025-04-01-preview"
RUN_TERMINAL = frozenset({"completed", "failed", "canceled"})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Eval(_Wire):
    id: str
    object: str = "eval"
    name: str | None = None
    created_at: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    testing_criteria: list[dict[str, Any]] = Field(default_factory=list)


class EvalRunError(_Wire):
    code: str | None = None
    message: str | None = None


class ResultCounts(_Wire):
    total: int = 0
    errored: int = 0
    failed: int = 0
    passed: int = 0


class EvalRun(_Wire):
    id: str
    object: str = "eval.run"
    eval_id: str | None = None
    name: str | None = None
    model: str | None = None
    status: str
    created_at: int | None = None
    error: EvalRunError | None = None
    result_counts: ResultCounts | None = None
    per_testing_criteria_results: list[dict[str, Any]] = Field(default_factory=list)
    report_url: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in RUN_TERMINAL


class GraderResult(_Wire):
    name: str
    type: str | None = None
    score: float = 0.0
    passed: bool = False
    error: str | None = None


class OutputItem(_Wire):
    id: str
    status: str | None = None
    datasource_item_id: int | None = None
    datasource_item: dict[str, Any] = Field(default_factory=dict)
    results: list[GraderResult] = Field(default_factory=list)
    sample: dict[str, Any] = Field(default_factory=dict)

    @property
    def output_text(self) -> str:
        if isinstance(self.sample.get("output_text"), str):
            return str(self.sample["output_text"])
        outputs = self.sample.get("output") or []
        return " ".join(str(o.get("content", "")) for o in outputs if isinstance(o, dict))


class Evals:
    def __init__(self, client: AzureOpenAIClient) -> None:
        self._c = client
        v1 = client.surface == V1
        self._version = {} if v1 else {"api-version": EVALS_API_VERSION}
        self._headers = {"aoai-evals": "preview"} if v1 else None

    def create(
        self,
        *,
        name: str,
        testing_criteria: Sequence[Mapping[str, Any]],
        item_schema: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Eval:
        body = {
            "name": name,
            "data_source_config": {
                "type": "custom",
                "item_schema": dict(item_schema or {"type": "object"}),
                "include_sample_schema": True,
            },
            "testing_criteria": [dict(c) for c in testing_criteria],
            "metadata": dict(metadata or {}),
        }
        response = self._c._send(
            "POST", "evals", params=self._version, headers=self._headers, json=body, idempotent=False
        )
        return self._c._parse(Eval, response)

    def get(self, eval_id: str) -> Eval:
        return self._c._parse(
            Eval, self._c._send("GET", f"evals/{seg(eval_id)}", params=self._version, headers=self._headers)
        )

    def list(self) -> Iterator[Eval]:
        return self._c._paginate("evals", Eval, {**self._version, "limit": 100}, self._headers)

    def delete(self, eval_id: str) -> None:
        self._c._send("DELETE", f"evals/{seg(eval_id)}", params=self._version, headers=self._headers)

    def create_run(
        self,
        eval_id: str,
        *,
        name: str,
        model: str,
        file_id: str,
        item_reference: str = "item.input",
        metadata: Mapping[str, str] | None = None,
    ) -> EvalRun:
        """A run whose samples are the deployment ``model``'s answers to each item's messages."""
        body = {
            "name": name,
            "data_source": {
                "type": "completions",
                "source": {"type": "file_id", "id": file_id},
                "input_messages": {"type": "item_reference", "item_reference": item_reference},
                "model": model,
                "sampling_params": {"temperature": 0, "seed": 42},
            },
            "metadata": dict(metadata or {}),
        }
        response = self._c._send(
            "POST",
            f"evals/{seg(eval_id)}/runs",
            params=self._version,
            headers=self._headers,
            json=body,
            idempotent=False,
        )
        return self._c._parse(EvalRun, response)

    def get_run(self, eval_id: str, run_id: str) -> EvalRun:
        response = self._c._send(
            "GET", f"evals/{seg(eval_id)}/runs/{seg(run_id)}", params=self._version, headers=self._headers
        )
        return self._c._parse(EvalRun, response)

    def list_runs(self, eval_id: str) -> Iterator[EvalRun]:
        return self._c._paginate(f"evals/{seg(eval_id)}/runs", EvalRun, {**self._version, "limit": 100}, self._headers)

    def delete_run(self, eval_id: str, run_id: str) -> None:
        self._c._send("DELETE", f"evals/{seg(eval_id)}/runs/{seg(run_id)}", params=self._version, headers=self._headers)

    def output_items(self, eval_id: str, run_id: str) -> Iterator[OutputItem]:
        return self._c._paginate(
            f"evals/{seg(eval_id)}/runs/{seg(run_id)}/output_items",
            OutputItem,
            {**self._version, "limit": 100},
            self._headers,
        )
