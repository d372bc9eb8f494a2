"""The files a run writes beside its record (`runs/<run_id>/<name>`): one registry of names and types.

The HTTP API serves exactly these; the pipeline, the CLI, the demo and the dashboard name them from here.
"""

from __future__ import annotations

RECORD = "run.json"
VALIDATION_REPORT = "validation.json"
EVENTS = "events.json"
RESULTS = "results.csv"
METRICS = "metrics.json"
LOSS_CHART = "loss.png"
ACCURACY_CHART = "accuracy.png"
REWARD_CHART = "reward.png"
"""Reinforcement fine-tuning only: the mean grader reward per step."""
EVAL = "eval.json"
EVAL_CHART = "eval.png"

CONTENT_TYPES: dict[str, str] = {
    VALIDATION_REPORT: "application/json",
    METRICS: "application/json",
    RESULTS: "text/csv",
    EVENTS: "application/json",
    LOSS_CHART: "image/png",
    ACCURACY_CHART: "image/png",
    REWARD_CHART: "image/png",
    EVAL: "application/json",
    EVAL_CHART: "image/png",
}
"""Every artifact a run may have (the record itself is served as the run, not as an artifact)."""

ARTIFACTS: tuple[str, ...] = tuple(CONTENT_TYPES)
"""In the order people look at them."""


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(name, "application/octet-stream")
