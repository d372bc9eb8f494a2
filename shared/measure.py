"""Measuring a trained run: results.csv -> metrics.json and the charts beside the run, then the quality gate.

Idempotent: the artifacts are rewritten with the same content, and the record's `metrics` and `gate` are
set once (a second measurer finds them and reuses them).
"""

from __future__ import annotations

import logging

from shared import artifacts
from shared.gate import GateResult, evaluate_gate
from shared.metrics import MetricsSummary, ResultsParseError, parse_results, summarize
from shared.runs import RunRecord
from shared.services import Services

log = logging.getLogger(__name__)


REWARD_GAP_WARNING = 0.10
"""Microsoft's fine-tuning skill (training-curves.md): a train-valid reward gap above 0.10 is possible reward
hacking."""


def ensure_metrics(services: Services, record: RunRecord) -> MetricsSummary | None:
    """results.csv, metrics.json and the charts, written beside the run (once)."""
    if record.metrics is not None:
        return record.metrics
    store = services.store
    result_files = list(record.job.result_files)
    if not result_files and record.job.id:  # the timer waited a while for it: look once more
        result_files = list(services.aoai.jobs.get(record.job.id).result_files or [])
    if not result_files:
        store.note(record.id, "no_results_file", "the job has no result file: no metrics")
        return None
    data = services.aoai.files.content(result_files[0])
    store.put_artifact(record.id, artifacts.RESULTS, data, artifacts.content_type(artifacts.RESULTS))
    try:
        table = parse_results(data)
    except ResultsParseError as exc:
        store.note(record.id, "results_unreadable", f"results.csv could not be read: {exc}")
        return None
    summary = summarize(
        table,
        checkpoints=[c.model_dump() for c in record.job.checkpoints],
        trained_tokens=record.job.trained_tokens,
        started_at=record.job.created_at,
        finished_at=record.job.finished_at,
    )
    store.put_artifact(
        record.id, artifacts.METRICS, summary.model_dump_json(indent=2), artifacts.content_type(artifacts.METRICS)
    )
    gap = summary.reward.train_valid_gap if summary.reward is not None else None
    if gap is not None and gap > REWARD_GAP_WARNING:
        store.note(record.id, "reward_gap", f"the mean training reward is {gap:.3f} above the validation reward "
                   f"(more than {REWARD_GAP_WARNING}): possible reward hacking; check the grader")
    from shared.charts import chart_marks, render_charts  # matplotlib: loaded only where a chart is drawn

    measured = record.model_copy(update={"metrics": summary})
    charts = render_charts(
        table, title=record.id, subtitle=record.job.fine_tuned_model or "", marks=chart_marks(measured, table)
    )
    for name, png in charts.items():
        store.put_artifact(record.id, name, png, artifacts.content_type(name))

    def keep(r: RunRecord) -> bool:
        r.metrics = summary
        return True

    store.update(record.id, keep)
    return summary


def check_gate(services: Services, record: RunRecord, summary: MetricsSummary | None) -> GateResult | None:
    """The run's quality gate (None when it has none), kept on the record."""
    assert record.spec is not None
    spec = record.spec.gate
    if spec is None:
        return None
    if summary is None:
        result = GateResult(passed=False, reasons=["no metrics: results.csv was unavailable"])
    else:
        result = evaluate_gate(spec, summary)

    def keep(r: RunRecord) -> bool:
        r.gate = result
        return True

    services.store.update(record.id, keep)
    return result
