"""The lifecycle table: every non-terminal state is swept and has a deadline; tags and transitions follow it."""

from __future__ import annotations

from pathlib import Path

from shared.lifecycle import LIFECYCLE, SWEPT_STATES, TERMINAL_STATES, Driver, RunState, allowed, table_markdown
from shared.runs import RunRecord, RunSource

DOCS = Path(__file__).resolve().parents[1] / "docs" / "engine.md"


def test_every_state_has_a_rule() -> None:
    assert set(LIFECYCLE) == set(RunState)


def test_no_run_can_stop_moving() -> None:
    for state, rule in LIFECYCLE.items():
        if rule.terminal:
            assert state in TERMINAL_STATES and not rule.swept and rule.driver == Driver.NONE
            continue
        assert rule.swept, f"{state} has no sweeper"
        assert rule.deadline is not None and rule.deadline_code, f"{state} has no deadline"
        assert allowed(state, RunState.FAILED), f"{state} cannot be ended at its deadline"
        if rule.driver == Driver.DEPLOY_QUEUE:
            assert rule.requeue_after is not None, f"{state} waits on a queue message nobody re-sends"


def test_every_non_terminal_state_reaches_a_terminal_one() -> None:
    for start in SWEPT_STATES:
        seen, frontier = {start}, [start]
        while frontier:
            state = frontier.pop()
            for nxt in LIFECYCLE[state].next - seen:
                seen.add(nxt)
                frontier.append(nxt)
        assert seen & TERMINAL_STATES, start


def test_deploy_false_ends_in_a_terminal_state_of_its_own() -> None:
    assert RunState.TRAINED in TERMINAL_STATES
    assert allowed(RunState.MEASURING, RunState.TRAINED)
    assert RunState.SUCCEEDED not in TERMINAL_STATES


def test_index_tag_active_is_derived_from_the_table() -> None:
    record = RunRecord.new("r-000000000000", RunSource(container="c", blob_name="b.jsonl", etag="e"))
    for state in RunState:
        record.state = state
        assert record.needs_sweep == (state in SWEPT_STATES)


def test_docs_show_the_table_as_built() -> None:
    assert table_markdown() in DOCS.read_text(encoding="utf-8")
