"""The run lifecycle as data: every state, who drives it, where it may go, its deadline and its sweeper.

    received --blob--> validating --blob--> importing --timer--> training --timer--> succeeded
        \\                  \\     \\            ^     \\                                    |
         rejected      rejected  `-> waiting -'      `-> waiting (a limit error)      deploy queue v
                                                                                   measuring
                                                        trained (deploy=false) <---/   |   \\---> gated
                                                                                       v
                                                              (spec.evaluation) evaluating --timer--> gated | trained
                                                                                       v
                                                                                   deploying --> deployed

Every non-terminal state can also end in `failed` (its deadline, or an error the service gives), and in
`cancelled` (the job was cancelled, or `cancel RUN_ID`). This table is the one source for:

- the allowed transitions (`RunRecord.transition` refuses anything else);
- the blob index tag `active`, which is how the timer finds what to look at (`swept` states, plus ended runs
  that still have surplus objects to delete);
- the deadlines the timer enforces (`shared.advance.sweep`): a run that stops moving is ended with the
  state's `deadline_code` and the last attempt's reason, never left where it stands.

Invariant (tested): every non-terminal state is swept and has a deadline, so no run can stop moving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class RunState(StrEnum):
    """Where a run stands. Terminal states never change again."""

    RECEIVED = "received"
    """The blob event was seen and the record created."""
    VALIDATING = "validating"
    """The file is being streamed through the validator."""
    REJECTED = "rejected"
    """Terminal: the file or the spec is unusable; the record says which line and which rule."""
    WAITING = "waiting"
    """Valid, waiting for room on the resource (its file or job limits); the timer admits runs in order."""
    IMPORTING = "importing"
    """Valid; the files are being imported into Azure OpenAI and processed there."""
    TRAINING = "training"
    """The fine-tuning job exists; the timer follows it."""
    SUCCEEDED = "succeeded"
    """The job succeeded and a deploy message is queued; nothing has been measured yet."""
    MEASURING = "measuring"
    """results.csv is being turned into metrics and charts, and the quality gate is checked."""
    EVALUATING = "evaluating"
    """Measured; the candidate is deployed for evaluation and scored against the baseline on the held-out test
    set (Evals API runs the timer follows); the candidate deployment is deleted once the verdict is in."""
    DEPLOYING = "deploying"
    """The gate passed: the deployment and its smoke test are under way."""
    TRAINED = "trained"
    """Terminal: trained and measured; not deployed because the run asked for none (deploy=false)."""
    DEPLOYED = "deployed"
    """Terminal: the model is deployed and answered the smoke test."""
    GATED = "gated"
    """Terminal: the quality gate refused the model; nothing was deployed."""
    FAILED = "failed"
    """Terminal: the service or the pipeline failed; `error` says why in the service's words."""
    CANCELLED = "cancelled"
    """Terminal: the job was cancelled."""


class Driver(StrEnum):
    """What moves a run out of a state."""

    BLOB_TRIGGER = "blob trigger"
    TIMER = "timer"
    DEPLOY_QUEUE = "deploy queue"
    NONE = "nothing (terminal)"


@dataclass(frozen=True)
class StateRule:
    state: RunState
    driver: Driver
    next: frozenset[RunState]
    deadline: timedelta | None
    """How long a run may stay in this state (counted from when it entered it)."""
    deadline_code: str
    """The error code a run gets when its deadline passes."""
    at_deadline: str
    """What happens at the deadline, in words (README and docs/engine.md show it)."""
    swept: bool
    """The timer looks at runs in this state every tick (the index tag `active`)."""
    requeue_after: timedelta | None = None
    """For queue-driven states: when nothing moved for this long, the timer queues the message again."""

    @property
    def terminal(self) -> bool:
        return not self.next


S = RunState
_ENDS = frozenset({S.FAILED, S.CANCELLED})
"""Every non-terminal state may fail, or be cancelled on request (shared/run_commands.py)."""

LIFECYCLE: dict[RunState, StateRule] = {
    rule.state: rule
    for rule in (
        StateRule(
            S.RECEIVED, Driver.BLOB_TRIGGER, frozenset({S.VALIDATING, S.REJECTED}) | _ENDS, timedelta(minutes=30),
            "ingest_incomplete", "failed with the last attempt's reason (its blob event went to the poison queue)",
            swept=True,
        ),
        StateRule(
            S.VALIDATING, Driver.BLOB_TRIGGER, frozenset({S.IMPORTING, S.WAITING, S.REJECTED}) | _ENDS,
            timedelta(minutes=30),
            "ingest_incomplete", "failed with the last attempt's reason (its blob event went to the poison queue)",
            swept=True,
        ),
        StateRule(
            S.WAITING, Driver.TIMER, frozenset({S.IMPORTING, S.CANCELLED}) | _ENDS, timedelta(days=7),
            "admission_timeout", "failed with the reason it waited (the resource never had room for it); files it "
            "had imported are deleted",
            swept=True,
        ),
        StateRule(
            S.IMPORTING, Driver.TIMER, frozenset({S.TRAINING, S.WAITING, S.CANCELLED}) | _ENDS, timedelta(hours=2),
            "import_incomplete", "failed with the last attempt's reason; imported files are deleted",
            swept=True,
        ),
        StateRule(
            S.TRAINING, Driver.TIMER, frozenset({S.SUCCEEDED, S.CANCELLED}) | _ENDS, timedelta(days=14),
            "training_deadline", "the job is cancelled and the run failed (no job runs or waits for two weeks)",
            swept=True,
        ),
        StateRule(
            S.SUCCEEDED, Driver.DEPLOY_QUEUE, frozenset({S.MEASURING}) | _ENDS, timedelta(days=1),
            "deploy_not_started", "failed: the deploy queue never took the run (messages are re-queued every "
            "10 minutes until then)",
            swept=True, requeue_after=timedelta(minutes=10),
        ),
        StateRule(
            S.MEASURING, Driver.DEPLOY_QUEUE, frozenset({S.DEPLOYING, S.EVALUATING, S.TRAINED, S.GATED}) | _ENDS,
            timedelta(days=1), "measure_incomplete", "failed with the last attempt's reason",
            swept=True, requeue_after=timedelta(minutes=10),
        ),
        StateRule(
            S.EVALUATING, Driver.TIMER, frozenset({S.DEPLOYING, S.TRAINED, S.GATED}) | _ENDS, timedelta(days=1),
            "evaluation_incomplete", "failed with the last attempt's reason; the candidate deployments are deleted",
            swept=True,
        ),
        StateRule(
            S.DEPLOYING, Driver.DEPLOY_QUEUE, frozenset({S.DEPLOYED}) | _ENDS, timedelta(days=1),
            "deployment_stuck", "failed with the last attempt's reason; the deployment stays recorded on the run",
            swept=True, requeue_after=timedelta(minutes=10),
        ),
        *(
            StateRule(state, Driver.NONE, frozenset(), None, "", "", swept=False)
            for state in (S.REJECTED, S.TRAINED, S.DEPLOYED, S.GATED, S.FAILED, S.CANCELLED)
        ),
    )
}

TERMINAL_STATES = frozenset(s for s, rule in LIFECYCLE.items() if rule.terminal)
SWEPT_STATES = frozenset(s for s, rule in LIFECYCLE.items() if rule.swept)
QUEUE_DRIVEN_STATES = frozenset(s for s, rule in LIFECYCLE.items() if rule.driver == Driver.DEPLOY_QUEUE)


def rule(state: RunState) -> StateRule:
    return LIFECYCLE[state]


def allowed(source: RunState, target: RunState) -> bool:
    return target in LIFECYCLE[source].next


def table_markdown() -> str:
    """The table as Markdown (docs/engine.md embeds it; a test keeps the two equal)."""
    lines = [
        "| state | driver | next states | timer sweep | deadline | at the deadline |",
        "|---|---|---|---|---|---|",
    ]
    for state, r in LIFECYCLE.items():
        if r.terminal:
            continue
        nexts = ", ".join(sorted(s.value for s in r.next))
        sweep = "every tick" if r.swept else "never"
        if r.requeue_after is not None:
            sweep += f"; deploy message re-sent after {_human(r.requeue_after)} idle"
        lines.append(f"| `{state.value}` | {r.driver.value} | {nexts} | {sweep} | {_human(r.deadline)} | "
                     f"`{r.deadline_code}`: {r.at_deadline} |")
    terminal = ", ".join(f"`{s.value}`" for s in LIFECYCLE if LIFECYCLE[s].terminal)
    lines.append(f"\nTerminal: {terminal}.")
    return "\n".join(lines)


def _human(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit if n > 1 else unit[:-1]}"
    return f"{seconds} s"
