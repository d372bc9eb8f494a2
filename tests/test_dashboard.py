"""shared.dashboard without a browser: escaping, paging, filters, the timeline (the browser tests do the rest)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.dashboard import (
    PAGE_SIZE,
    RunsQuery,
    listing_from_records,
    listing_from_store,
    run_page,
    runs_page,
    timeline,
)
from shared.runs import RunRecord, RunSource, RunSpec, RunState
from shared.services import Services
from shared.settings import settings_from_env


def _record(n: int, *, profile: str | None = None) -> RunRecord:
    record = RunRecord.new(f"run-{n:012d}", RunSource(container="training-data", blob_name=f"f{n}.jsonl", etag="e"))
    record.created_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    record.spec = RunSpec(model="gpt-4o-mini-2024-07-18", profile=profile)
    return record


def test_a_hostile_error_message_is_text_not_markup() -> None:
    record = _record(1)
    record.fail("BadRequest", '<script>alert("x")</script> & <img src=x onerror=alert(1)>')
    html = run_page(record, code='k"><script>')
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in html
    assert 'code=k%22%3E%3Cscript%3E' in html  # the key is URL-encoded in every link


def test_runs_are_newest_first_and_paged() -> None:
    records = [_record(n) for n in range(PAGE_SIZE + 5)]
    first = runs_page(listing_from_records(records, RunsQuery(page=1)), RunsQuery(page=1), code="key")
    second = runs_page(listing_from_records(records, RunsQuery(page=2)), RunsQuery(page=2), code="key")
    assert first.count('<tr data-run="') == PAGE_SIZE and second.count('<tr data-run="') == 5
    assert first.index("run-000000000029") < first.index("run-000000000028")  # newest first
    assert "run-000000000000" in second and "run-000000000000" not in first
    assert 'href="/api/dashboard?page=2&amp;code=key" rel="next"' in first
    assert 'rel="prev"' in second and 'rel="next"' not in second
    assert "page 2 of 2" in second
    assert 'data-refresh="5"' in first  # runs still received: the page refreshes itself


def test_filters_by_state_and_profile() -> None:
    a, b, c = _record(1, profile="support"), _record(2, profile="legal"), _record(3, profile="support")
    c.fail("x", "y")
    query = RunsQuery(state="received", profile="support")
    html = runs_page(listing_from_records([a, b, c], query), query)
    assert html.count('<tr data-run="') == 1 and 'data-run="run-000000000001"' in html
    assert '<option value="legal">legal</option>' in html and '<option value="support" selected>' in html
    none = RunsQuery(state="deployed")
    assert "No run matches these filters." in runs_page(listing_from_records([a], none), none)


def test_the_timeline_has_durations_and_the_ongoing_step() -> None:
    record = _record(1)
    start = record.created_at
    record.history[0].at = start
    record.transition(RunState.VALIDATING, at=start + timedelta(seconds=3))
    record.transition(RunState.IMPORTING, at=start + timedelta(seconds=65))
    entries = timeline(record, now=start + timedelta(seconds=4000))
    assert [(e.state, e.lasted, e.ongoing) for e in entries] == [
        ("received", "3s", False),
        ("validating", "1m 02s", False),
        ("importing", "1h 05m", True),
    ]
    record.fail("quota", "no room")
    assert timeline(record, now=start + timedelta(days=3))[-1].lasted is None  # terminal: nothing is ongoing


def test_a_training_run_shows_its_latest_step() -> None:
    record = _record(1)
    for state in (RunState.VALIDATING, RunState.IMPORTING, RunState.TRAINING):
        record.transition(state)
    record.job.id, record.job.status = "ftjob-1", "running"
    record.job.latest_metrics = {"step": 92, "train_loss": 0.47621, "train_mean_token_accuracy": 0.8}
    html = run_page(record)
    assert '<dd id="latest-step">step 92: training loss 0.4762</dd>' in html
    assert 'data-refresh="5"' in html


def test_the_runs_page_reads_only_the_records_it_shows(
    azurite: Any, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"AzureWebJobsStorage": azurite.connection_string, "RUNS_CONTAINER": unique_name("runs"),
           "AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:9", "AZURE_OPENAI_API_KEY": "unused"}
    services = Services.from_settings(settings_from_env(env), env=env)
    services.store.ensure()
    for n in range(PAGE_SIZE + 7):
        record = _record(n, profile="support" if n % 3 == 0 else None)
        if n % 4 == 0:
            record.fail("x", "y")
        services.store.create(record)
    services.store.container.upload_blob("profiles/support.json", b"{}")
    loads: list[str] = []
    original = services.store.load
    monkeypatch.setattr(services.store, "load", lambda run_id: loads.append(run_id) or original(run_id))

    listing = listing_from_store(services, RunsQuery())
    assert len(loads) == PAGE_SIZE and len(listing.rows) == PAGE_SIZE  # one page read, not every run
    assert (listing.total, listing.matching, listing.pages) == (PAGE_SIZE + 7, PAGE_SIZE + 7, 2)
    assert listing.counts == Counter({"received": 24, "failed": 8}) and listing.profiles == ["support"]
    assert [s.id for s in listing.rows] == sorted((s.id for s in listing.rows), reverse=True)  # newest first

    loads.clear()
    failed = listing_from_store(services, RunsQuery(state="failed"))
    assert len(loads) == 8 and {s.state for s in failed.rows} == {"failed"}  # filtered by the state tag
    second = listing_from_store(services, RunsQuery(page=2))
    assert len(second.rows) == 7 and "run-000000000000" in {s.id for s in second.rows}
    by_profile = listing_from_store(services, RunsQuery(profile="support", state="received"))
    assert {s.id for s in by_profile.rows} == {f"run-{n:012d}" for n in range(PAGE_SIZE + 7) if n % 3 == 0 and n % 4}


def test_a_retrying_run_says_what_went_wrong_last_and_warnings_show_their_code() -> None:
    record = _record(1)
    record.transition(RunState.VALIDATING)
    record.transition(RunState.IMPORTING)
    assert record.attempted("RateLimitError", "429 Too Many Requests: retry after 60 s")
    record.warn("queued_long", "the job has waited 75 minutes in the queue")
    html = run_page(record)
    assert '<h2 id="retrying-title">Retrying: RateLimitError</h2>' in html
    assert "429 Too Many Requests: retry after 60 s" in html
    assert "<code>queued_long</code> the job has waited 75 minutes in the queue" in html
    record.fail("quota", "no room")
    assert "retrying-title" not in run_page(record)  # ended: the error says it, not a retry box


def test_an_evaluated_run_shows_baseline_against_candidate() -> None:
    from shared.evalspec import EvalSide, Evaluation

    record = _record(1)
    record.evaluation = Evaluation(
        status="completed",
        test_examples=14,
        graders=["exact", "similar"],
        baseline=EvalSide(model="gpt-4o-mini", deployment="support", score=0.61, pass_rate=0.5),
        candidate=EvalSide(model="gpt-4o-mini.ft-1", deployment="eval-cand", score=0.58, pass_rate=0.43),
        improvement=-0.03,
        ci95=(-0.08, 0.02),
        passed=False,
        reasons=["the candidate scores 0.580, below the baseline's 0.610"],
    )
    html = run_page(record, artifacts=["eval.png"], code="k")
    assert '<h2 id="evaluation-title">Evaluation: baseline vs candidate</h2>' in html
    assert 'failed</span>  on 14 held-out examples (graders: exact, similar); improvement -0.030' in html
    assert "(95% interval -0.080 to +0.020)" in html
    assert "<td class=\"num\">0.610</td>" in html and "<td class=\"num\">43%</td>" in html
    assert "the candidate scores 0.580, below the baseline&#39;s 0.610" in html
    assert 'src="/api/runs/run-000000000001/eval.png?code=k"' in html
    row = runs_page(listing_from_records([record], RunsQuery()), RunsQuery())
    assert '<span class="fail">failed</span><div class="muted">-0.030</div>' in row
