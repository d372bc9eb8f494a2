"""The simulated run of a fine-tuning job: a deterministic plan, and its state at any moment.

Nothing runs in the background. When a job is created the emulator fixes a *plan* (phase durations in
real seconds, resolved hyperparameters, step count, the seed); everything a client can observe (status,
events, checkpoints, metrics, results.csv) is computed from the plan and the clock. That keeps restarts
(`--state-dir`) and pause/resume simple, and makes the figures a pure function of (seed, data, hyperparameters).

Time is measured on an *active* clock: seconds since creation minus the time spent paused.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import reinforcement

METRIC_KEYS = (
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
CURRENT_COLUMNS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "validation_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
LEGACY_COLUMNS = (
    "step",
    "elapsed_tokens",
    "elapsed_examples",
    "training_loss",
    "training_sequence_accuracy",
    "training_token_accuracy",
    "validation_loss",
    "validation_sequence_accuracy",
    "validation_token_accuracy",
)
MAX_METRIC_EVENTS = 200
# Both sentences as the safety-evaluation how-to quotes them (fine-tuning-safety-evaluation.md).
RAI_MESSAGE = (
    "The provided training data failed RAI checks for harm types: [{harms}]. Please fix the data and try again."
)
SAFETY_EVAL_MESSAGE = (
    "This model is unable to be deployed. Model evaluation identified that this fine tuned model scores above "
    "acceptable thresholds for [{harms}]. Please review your training data set and resubmit the job."
)
DEFAULT_RAI_HARMS = ("hate_fairness", "self_harm", "violence")
DEFAULT_SAFETY_HARMS = "Violence, Self Harm"
KEPT_CHECKPOINTS = 3
"""Only the last three epochs are kept: the final one is the fine-tuned model, the two before are checkpoints."""
INTERNAL_FAILURE_MESSAGE = "The job failed due to an internal error. Please try again."


def auto_batch_size(n_examples: int) -> int:
    return max(1, min(256, round(0.002 * n_examples)))


def auto_lr_multiplier(batch_size: int) -> float:
    return 0.05 if batch_size < 4 else 0.1 if batch_size < 16 else 0.2


@dataclass
class Phase:
    """Active-clock offsets (seconds since creation) of the phase boundaries of one job."""

    validated: float
    started: float
    trained: float
    done: float
    """"Job succeeded.": the status reads succeeded from here on."""
    results: float
    """"Completed results file" and "Training tokens billed": result_files and trained_tokens appear."""


def phases(plan: dict[str, Any]) -> Phase:
    validated = plan["validate_s"]
    waited = plan["queue_s"] + plan.get("wait_s", 0.0)  # wait_s: behind the jobs ahead (emulator.limits)
    started = math.inf if plan.get("scenario") == "stuck_queued" else validated + waited
    trained = started + plan["train_s"]
    done = trained + plan["finalize_s"]
    return Phase(validated, started, trained, done, done + plan.get("results_s", 0.0))


def step_offset(plan: dict[str, Any], step: int) -> float:
    p = phases(plan)
    return float(p.started + plan["train_s"] * step / plan["total_steps"])


def metrics(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step: a noisy exponential loss decay and a rising token accuracy, seeded.

    Cached (rows are shared: callers copy before changing one). An RFT job's rows also have the reward columns
    (emulator/reinforcement.py).
    """
    if plan.get("method") == "reinforcement":
        return _rft_metrics(plan["seed"], plan["data_sha"], plan["n_epochs"], plan["batch_size"], plan["total_steps"],
                            plan["steps_per_epoch"], plan["has_validation"], plan.get("grader_fields_ok", True))
    return _metrics(plan["seed"], plan["data_sha"], plan["n_epochs"], plan["batch_size"], plan["total_steps"],
                    plan["steps_per_epoch"], plan["has_validation"])


@lru_cache(maxsize=64)
def _rft_metrics(seed: int, data_sha: str, n_epochs: int, batch_size: int, total: int, per_epoch: int,
                 has_validation: bool, grader_fields_ok: bool) -> list[dict[str, Any]]:
    plan = {"seed": seed, "data_sha": data_sha, "grader_fields_ok": grader_fields_ok}
    rows = _metrics(seed, data_sha, n_epochs, batch_size, total, per_epoch, has_validation)
    return [{**row, **reinforcement.reward_row(plan, row["step"], total, row["valid_loss"] is not None)}
            for row in rows]


@lru_cache(maxsize=256)
def _metrics(seed: int, data_sha: str, n_epochs: int, batch_size: int, total: int, per_epoch: int,
             has_validation: bool) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:{data_sha}:{n_epochs}:{batch_size}")
    start = 1.6 + 0.9 * rng.random()
    floor = 0.04 + 0.12 * rng.random()
    rate = 3.0 + 1.5 * rng.random()
    eval_every = max(1, per_epoch // 2) if has_validation else 0
    rows = []
    for step in range(1, total + 1):
        progress = step / total
        smooth = floor + (start - floor) * math.exp(-rate * progress)
        loss = max(0.001, smooth * (1 + rng.gauss(0, 0.06)))
        acc = min(0.999, max(0.0, 0.42 + 0.56 * (1 - (smooth - floor) / (start - floor)) + rng.gauss(0, 0.015)))
        row: dict[str, Any] = {"step": step, "train_loss": round(loss, 5), "train_mean_token_accuracy": round(acc, 5)}
        row.update({k: None for k in METRIC_KEYS[2:]})
        if eval_every and (step % eval_every == 0 or step == total):
            vloss = smooth * 1.1 * (1 + rng.gauss(0, 0.04)) + 0.02
            row["valid_loss"] = round(vloss, 5)
            row["valid_mean_token_accuracy"] = round(max(0.0, acc - 0.03 + rng.gauss(0, 0.01)), 5)
        if has_validation and step % per_epoch == 0:
            row["full_valid_loss"] = round(smooth * 1.12 + 0.02, 5)
            row["full_valid_mean_token_accuracy"] = round(max(0.0, acc - 0.035), 5)
        rows.append(row)
    return rows


def metric_event_steps(plan: dict[str, Any]) -> list[int]:
    total = plan["total_steps"]
    every = max(1, math.ceil(total / MAX_METRIC_EVENTS))
    return [s for s in range(1, total + 1) if s % every == 0 or s == total]


def event_id(job_id: str, index: int) -> str:
    return "ftevent-" + hashlib.sha256(f"{job_id}:{index}".encode()).hexdigest()[:32]


def checkpoint_id(job_id: str, epoch: int) -> str:
    return "ftchkpt-" + hashlib.sha256(f"{job_id}:ckpt:{epoch}".encode()).hexdigest()[:32]


def timeline(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event the job will ever emit, oldest first: {offset, level, message, type, data}.

    The view layer cuts it at the present (and at a cancellation) and maps offsets to wall-clock times.
    """
    plan = job["plan"]
    p = phases(plan)
    scenario = plan.get("scenario")
    harms = ", ".join(plan.get("harm_types") or DEFAULT_RAI_HARMS)
    out: list[dict[str, Any]] = []

    def add(offset: float, message: str, level: str = "info", kind: str = "message", data: Any = None) -> None:
        out.append({"offset": offset, "level": level, "message": message, "type": kind, "data": data})

    add(0.0, f"Validating training file: {job['training_file']}")
    if job.get("validation_file"):
        add(0.0, f"Validating validation file: {job['validation_file']}")
    if scenario == "rai_failure":
        add(p.validated, RAI_MESSAGE.format(harms=harms), level="error")
        return out
    add(p.validated, "Job enqueued. Waiting for jobs ahead to complete.")
    if math.isinf(p.started):
        return out
    add(p.started, "Job started.")
    rows = metrics(plan)
    fail_at = plan["total_steps"] // 2 if scenario == "job_failure" else None
    per_epoch = plan["steps_per_epoch"]
    event_steps = set(metric_event_steps(plan))
    for row in rows:
        step = row["step"]
        offset = step_offset(plan, step)
        if step in event_steps:
            text = f"Step {step}: training loss={row['train_loss']:.5f}"
            if row["valid_loss"] is not None:
                text += f", validation loss={row['valid_loss']:.5f}"
            if "train_reward_mean" in row:
                text += f", train_reward_mean={row['train_reward_mean']:.5f}"
            add(offset, text, kind="metrics", data=dict(row))
        if step % per_epoch == 0:
            add(offset, f"Checkpoint created at step {step}.")
        if fail_at is not None and step == fail_at:
            add(offset, INTERNAL_FAILURE_MESSAGE, level="error")
            return out
    if scenario == "safety_eval_failure":
        # The how-to shows the post-training safety evaluation as a failed job carrying this message.
        add(p.trained, SAFETY_EVAL_MESSAGE.format(harms=plan.get("safety_harm_types") or DEFAULT_SAFETY_HARMS),
            level="error")
        return out
    add(p.trained, "Model Evaluation Passed.")
    add(p.done, "Job succeeded.")
    # Seen in real event streams: the results file and the billing come after "Job succeeded.".
    add(p.results, f"Completed results file: {job['result_file_id']}")
    add(p.results, f"Training tokens billed: {plan['trained_tokens']}")
    return out


def outcome(plan: dict[str, Any]) -> tuple[str, float, dict[str, Any] | None]:
    """(terminal status, active offset at which it is reached, error) when nothing interrupts the job."""
    p = phases(plan)
    scenario = plan.get("scenario")
    if scenario == "rai_failure":
        harms = ", ".join(plan.get("harm_types") or DEFAULT_RAI_HARMS)
        return "failed", p.validated, {"code": "contentFilter", "message": RAI_MESSAGE.format(harms=harms),
                                       "param": "training_file"}
    if scenario == "safety_eval_failure":
        harms = plan.get("safety_harm_types") or DEFAULT_SAFETY_HARMS
        return "failed", p.trained, {"code": "contentFilter", "message": SAFETY_EVAL_MESSAGE.format(harms=harms),
                                     "param": None}
    if scenario == "job_failure":
        return "failed", step_offset(plan, plan["total_steps"] // 2), {
            "code": "internalFailure", "message": INTERNAL_FAILURE_MESSAGE, "param": None}
    return "succeeded", p.done, None


def checkpoints(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One checkpoint per epoch (oldest first), with the metrics of its step; see `kept_checkpoints`.

    The final epoch's `fine_tuned_model_checkpoint` is the fine-tuned model's own name (the final epoch *is*
    the fine-tuned model); earlier ones are `<model>:ckpt-step-N`. `metrics.step` is a float, as in
    openai-python's `FineTuningJobCheckpoint.Metrics`.
    """
    plan = job["plan"]
    rows = metrics(plan)
    out = []
    fail_at = plan["total_steps"] // 2 if plan.get("scenario") == "job_failure" else None
    for epoch in range(1, plan["n_epochs"] + 1):
        step = epoch * plan["steps_per_epoch"]
        if fail_at is not None and step > fail_at:
            break
        row = rows[step - 1]
        final = epoch == plan["n_epochs"]
        name = plan["fine_tuned_model"] if final else f"{plan['fine_tuned_model']}:ckpt-step-{step}"
        out.append({
            "epoch": epoch,
            "offset": step_offset(plan, step),
            "id": checkpoint_id(job["id"], epoch),
            "step_number": step,
            "fine_tuned_model_checkpoint": name,
            "metrics": {"step": float(step), **{k: row[k] for k in METRIC_KEYS}, **(
                {"train_mean_reward": row["train_reward_mean"], "full_valid_mean_reward": row["valid_reward_mean"]}
                if "train_reward_mean" in row else {})},
        })
    return out


def kept(created: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checkpoints the service lists: the newest three created so far (older ones are not kept)."""
    return created[-KEPT_CHECKPOINTS:]


def _cell(value: Any) -> str:
    return "" if value is None else f"{value}"


def results_csv(job: dict[str, Any], *, legacy: bool) -> bytes:
    plan = job["plan"]
    rows = metrics(plan)
    rft = plan.get("method") == "reinforcement" and not legacy
    lines = [",".join(LEGACY_COLUMNS if legacy else CURRENT_COLUMNS + (reinforcement.REWARD_KEYS if rft else ()))]
    tokens_per_step = plan["epoch_tokens"] / max(1, plan["steps_per_epoch"])
    for row in rows:
        if legacy:
            step = row["step"]
            cells = [
                step,
                round(tokens_per_step * step),
                min(step * plan["batch_size"], plan["n_examples"] * plan["n_epochs"]),
                row["train_loss"],
                round(max(0.0, row["train_mean_token_accuracy"] - 0.25), 5),
                row["train_mean_token_accuracy"],
                row["valid_loss"],
                None if row["valid_mean_token_accuracy"] is None else round(
                    max(0.0, row["valid_mean_token_accuracy"] - 0.25), 5),
                row["valid_mean_token_accuracy"],
            ]
        else:
            cells = [row["step"]] + [row[k] for k in METRIC_KEYS]
            if rft:
                cells += [row[k] for k in reinforcement.REWARD_KEYS]
        lines.append(",".join(_cell(c) for c in cells))
    return ("\n".join(lines) + "\n").encode()
