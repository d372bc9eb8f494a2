"""The dashboard's pages: server-rendered HTML (Jinja2, autoescaped) with a little script.

- the runs page: state, blob, profile, model, cost, the gate's verdict and age of every run; filter by state
  and profile; newest first; paged.
- a run's page: the error in the service's words, the summary, the validation report's first errors and
  warnings grouped by code, the charts, the gate's checks, the deployment and its smoke test, the history as
  a timeline with durations, the job's events and links to every artifact.

Both refresh themselves while a run is active (a fetch of the same URL every few seconds, which a person can
pause). Every value reaches the page through `run_summary` or the run record; every link carries the function
key (`?code=`) it was opened with, so a browser can follow them.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from shared import artifacts
from shared.runs import RunRecord
from shared.runstore import RECORD_NAME, created_tag, run_folder
from shared.summary import RunSummary, run_summary

if TYPE_CHECKING:
    from jinja2 import Environment

    from shared.services import Services

PAGE_SIZE = 25
REFRESH_SECONDS = 5
ROUTE_PREFIX = "/api"  # host.json extensions.http.routePrefix
ARTIFACTS = artifacts.ARTIFACTS
CHARTS = (("loss.png", "loss"), ("accuracy.png", "token accuracy"), ("reward.png", "mean grader reward"))
"""The charts a run page shows (reward.png: reinforcement fine-tuning only)."""
EVAL_CHART = "eval.png"
ISSUES_PER_CODE = 3
EVENTS_SHOWN = 12

_TEMPLATES = Path(__file__).with_name("dashboard_templates")


@dataclass(frozen=True)
class RunsQuery:
    state: str | None = None
    profile: str | None = None
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RunsQuery:
        try:
            page = max(1, int(params.get("page") or 1))
        except ValueError:
            page = 1
        return cls(state=params.get("state") or None, profile=params.get("profile") or None, page=page)


@dataclass
class Links:
    """URLs of the app, each with the function key the page was opened with."""

    code: str | None = None

    def _q(self, **params: object) -> str:
        items = {k: v for k, v in params.items() if v not in (None, "")}
        if self.code:
            items["code"] = self.code
        return f"?{urlencode(items)}" if items else ""

    def runs(self, **params: object) -> str:
        return f"{ROUTE_PREFIX}/dashboard{self._q(**params)}"

    def run(self, run_id: str) -> str:
        return f"{ROUTE_PREFIX}/dashboard/runs/{quote(run_id)}{self._q()}"

    def chart(self, run_id: str, name: str) -> str:
        return f"{ROUTE_PREFIX}/dashboard/runs/{quote(run_id)}/charts/{quote(name)}{self._q()}"

    def artifact(self, run_id: str, name: str) -> str:
        return f"{ROUTE_PREFIX}/runs/{quote(run_id)}/{quote(name)}{self._q()}"

    def record(self, run_id: str) -> str:
        return f"{ROUTE_PREFIX}/runs/{quote(run_id)}{self._q()}"


def age(at: datetime, now: datetime) -> str:
    """'42s', '5m', '3h', '2d': how long ago."""
    return duration((now - at).total_seconds())


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


@lru_cache(maxsize=1)
def _env() -> Environment:
    """The template environment, built on the first page (Jinja2 is not imported before)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(("html",)),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["number"] = lambda v: "-" if v is None else f"{v:,}"
    env.filters["loss"] = lambda v: "-" if v is None else f"{v:.4f}"
    env.filters["iso"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    env.filters["when"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return env


# --- the runs page ---------------------------------------------------------------------------------------------
@dataclass
class Listing:
    """One page of the runs list, and what the filters and the header need to know about all runs."""

    rows: list[RunSummary]
    matching: int
    total: int
    counts: Counter[str]
    profiles: list[str]
    page: int
    pages: int


def _paged(query: RunsQuery, matching: int) -> tuple[int, int, slice]:
    pages = max(1, -(-matching // PAGE_SIZE))
    page = min(query.page, pages)
    return page, pages, slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE)


def listing_from_records(
    records: Iterable[RunRecord], query: RunsQuery, *, price_per_million_tokens: float | None = None
) -> Listing:
    """The listing from records in hand (every record read)."""
    every = sorted(
        (run_summary(r, price_per_million_tokens=price_per_million_tokens) for r in records),
        key=lambda s: s.created_at,
        reverse=True,
    )
    shown = [
        s
        for s in every
        if (query.state is None or s.state == query.state) and (query.profile is None or s.profile == query.profile)
    ]
    page, pages, window = _paged(query, len(shown))
    profiles = sorted({s.profile for s in every if s.profile})
    return Listing(shown[window], len(shown), len(every), Counter(s.state for s in every), profiles, page, pages)


def listing_from_store(services: Services, query: RunsQuery) -> Listing:
    """The listing from one blob listing (names, creation times and index tags) plus the records of one page.

    The `created` and `state` index tags (written with each record) order, filter and count; only the page's
    records are read, in parallel. A profile filter has to read every record in the state (the profile is not a tag).
    """
    price = services.settings.price_per_million_training_tokens
    store = services.store
    entries = []
    for blob in store.container.list_blobs(name_starts_with="runs/", include=["tags"]):
        name = str(blob.name)
        if name.endswith("/" + RECORD_NAME) and name.count("/") == 2:
            tags = blob.tags or {}
            # Records written before the `created` tag existed: the blob's creation time (to the second).
            created = tags.get("created") or created_tag(blob.creation_time)
            entries.append((name.split("/")[1], created, tags.get("state", "")))
    entries.sort(key=lambda e: e[1], reverse=True)
    counts = Counter(state for _, _, state in entries)
    wanted = [run_id for run_id, _, state in entries if query.state is None or state == query.state]
    profiles = _profile_names(services)

    def load(ids: list[str]) -> list[RunSummary]:
        with ThreadPoolExecutor(max_workers=max(1, min(10, len(ids)))) as pool:  # the SDK's pool holds 10
            found = list(pool.map(store.load, ids))
        return [run_summary(f[0], price_per_million_tokens=price) for f in found if f is not None]

    if query.profile is not None:
        summaries = [s for s in load(wanted) if s.profile == query.profile]
        page, pages, window = _paged(query, len(summaries))
        return Listing(summaries[window], len(summaries), len(entries), counts, profiles, page, pages)
    page, pages, window = _paged(query, len(wanted))
    rows = sorted(load(wanted[window]), key=lambda s: s.created_at, reverse=True)
    return Listing(rows, len(wanted), len(entries), counts, profiles, page, pages)


def _profile_names(services: Services) -> list[str]:
    names = (str(b.name) for b in services.store.container.list_blobs(name_starts_with="profiles/"))
    return sorted(n[len("profiles/") : -len(".json")] for n in names if n.endswith(".json") and n.count("/") == 1)


def runs_page(
    listing: Listing,
    query: RunsQuery,
    *,
    code: str | None = None,
    now: datetime | None = None,
    nonce: str = "",
) -> str:
    now = now or datetime.now(UTC)
    links = Links(code)
    page = listing.page
    profiles = sorted(set(listing.profiles) | ({query.profile} if query.profile else set()))
    return _env().get_template("runs.html").render(
        title="Fine-tuning runs",
        rows=listing.rows,
        total=listing.total,
        matching=listing.matching,
        states=sorted(listing.counts),
        profiles=profiles,
        query=query,
        page=page,
        pages=listing.pages,
        links=links,
        code=code,
        runs_path=f"{ROUTE_PREFIX}/dashboard",
        now=now,
        age=age,
        refresh=REFRESH_SECONDS if any(not s.terminal for s in listing.rows) else None,
        counts=listing.counts,
        nonce=nonce,
        prev_url=links.runs(state=query.state, profile=query.profile, page=page - 1) if page > 1 else None,
        next_url=links.runs(state=query.state, profile=query.profile, page=page + 1) if page < listing.pages else None,
    )


# --- a run's page ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssueGroup:
    code: str
    count: int
    examples: list[str]


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    state: str
    note: str
    lasted: str | None
    ongoing: bool


@dataclass
class RunView:
    summary: RunSummary
    record: RunRecord
    errors: list[IssueGroup] = field(default_factory=list)
    warnings: list[IssueGroup] = field(default_factory=list)
    report: dict[str, Any] | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    events_total: int = 0
    charts: list[tuple[str, str, str]] = field(default_factory=list)
    """(label, image URL, alt text) of each chart that exists."""
    artifacts: list[tuple[str, str]] = field(default_factory=list)
    gate_checks: list[dict[str, Any]] = field(default_factory=list)
    eval_chart: str | None = None
    """URL of eval.png (baseline vs candidate), when the evaluation drew one."""


def group_issues(issues: Sequence[Mapping[str, Any]], counts: Mapping[str, int] | None = None) -> list[IssueGroup]:
    """Issues by code, the most frequent first, each with its first few occurrences ('line 3: message')."""
    by_code: dict[str, list[str]] = {}
    for issue in issues:
        line = issue.get("line")
        where = "validation file " if issue.get("file") == "validation" else ""
        at = f"{where}line {line}: " if line else (f"{where}: " if where else "")
        by_code.setdefault(str(issue.get("code")), []).append(f"{at}{issue.get('message', '')}")
    groups = [
        IssueGroup(code, max(len(items), (counts or {}).get(code, 0)), items[:ISSUES_PER_CODE])
        for code, items in by_code.items()
    ]
    return sorted(groups, key=lambda g: (-g.count, g.code))


def timeline(record: RunRecord, now: datetime) -> list[TimelineEntry]:
    entries = []
    for i, h in enumerate(record.history):
        following = record.history[i + 1].at if i + 1 < len(record.history) else None
        last = following is None
        if following is not None:
            lasted: str | None = duration((following - h.at).total_seconds())
        elif not record.terminal:
            lasted = duration((now - h.at).total_seconds())
        else:
            lasted = None
        entries.append(TimelineEntry(h.at, h.state.value, h.note, lasted, last and not record.terminal))
    return entries


def run_page(
    record: RunRecord,
    *,
    validation_report: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    artifacts: Iterable[str] = (),
    code: str | None = None,
    price_per_million_tokens: float | None = None,
    now: datetime | None = None,
    nonce: str = "",
) -> str:
    now = now or datetime.now(UTC)
    links = Links(code)
    summary = run_summary(record, price_per_million_tokens=price_per_million_tokens)
    present = set(artifacts)
    view = RunView(summary=summary, record=record)
    if validation_report is not None:
        counts = validation_report.get("counts") or {}
        view.report = dict(validation_report)
        view.errors = group_issues(validation_report.get("errors") or [], counts)
        view.warnings = group_issues(validation_report.get("warnings") or [], counts)
    view.timeline = timeline(record, now)
    view.events = [dict(e) for e in list(events)[:EVENTS_SHOWN]]
    view.events_total = len(events)
    for name, label in CHARTS:
        if name in present:
            view.charts.append((label, links.chart(record.id, name), _chart_alt(summary, label)))
    if EVAL_CHART in present:
        view.eval_chart = links.artifact(record.id, EVAL_CHART)
    view.artifacts = [(name, links.artifact(record.id, name)) for name in ARTIFACTS if name in present]
    view.artifacts.append(("run.json (the record)", links.record(record.id)))
    if record.gate:
        view.gate_checks = [c.model_dump() for c in record.gate.checks]
    return _env().get_template("run.html").render(
        title=f"Run {record.id}",
        view=view,
        s=summary,
        links=links,
        now=now,
        age=age,
        refresh=None if summary.terminal else REFRESH_SECONDS,
        event_time=_event_time,
        nonce=nonce,
    )


def not_found_page(run_id: str, *, code: str | None = None, nonce: str = "") -> str:
    return _env().get_template("not_found.html").render(
        title="No such run", run_id=run_id, links=Links(code), refresh=None, nonce=nonce
    )


# --- what the HTTP handlers call -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


def _html(status: int, render: Callable[[str], str]) -> Page:
    nonce = secrets.token_urlsafe(16)
    headers = {
        # The function key is in the URL: never send it on in a Referer, never frame the page.
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": (
            f"default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
    return Page(status, render(nonce).encode(), "text/html", headers)


def runs_response(services: Services, params: Mapping[str, str]) -> Page:
    code = params.get("code") or None
    query = RunsQuery.from_params(params)
    listing = listing_from_store(services, query)
    return _html(200, lambda nonce: runs_page(listing, query, code=code, nonce=nonce))


def run_response(services: Services, run_id: str, params: Mapping[str, str]) -> Page:
    code = params.get("code") or None
    found = services.store.load(run_id)
    if found is None:
        return _html(404, lambda nonce: not_found_page(run_id, code=code, nonce=nonce))
    record = found[0]
    present = artifact_names(services, run_id)
    report = _json_artifact(services, run_id, "validation.json") if "validation.json" in present else None
    events = _json_artifact(services, run_id, "events.json") if "events.json" in present else None
    price = services.settings.price_per_million_training_tokens
    return _html(
        200,
        lambda nonce: run_page(
            record,
            validation_report=report if isinstance(report, dict) else None,
            events=events if isinstance(events, list) else (),
            artifacts=present,
            code=code,
            price_per_million_tokens=price,
            nonce=nonce,
        ),
    )


def chart_response(services: Services, run_id: str, name: str) -> Page:
    """A run's chart; once it is deployed, drawn again from results.csv with the deployed checkpoint marked."""
    if name not in dict(CHARTS):
        return Page(404, b"", "text/plain", {})
    found = services.store.load(run_id)
    stored = services.store.get_artifact(run_id, name)
    if found is None or stored is None:
        return Page(404, b"", "text/plain", {})
    record = found[0]
    cache = {"Cache-Control": f"private, max-age={3600 if record.terminal else 30}"}
    if record.deployment.provisioning_state != "Succeeded":
        return Page(200, stored, "image/png", cache)
    from shared.charts import chart_marks, render_chart  # matplotlib: loaded only when a chart is redrawn
    from shared.metrics import ResultsParseError, parse_results

    results = services.store.get_artifact(run_id, "results.csv")
    try:
        table = parse_results(results) if results is not None else None
    except ResultsParseError:
        table = None
    if table is None:
        return Page(200, stored, "image/png", cache)
    subtitle = record.job.fine_tuned_model or ""
    png = render_chart(table, name, title=record.id, subtitle=subtitle, marks=chart_marks(record, table))
    return Page(200, png, "image/png", cache)


def artifact_names(services: Services, run_id: str) -> set[str]:
    """The artifacts that exist beside the record (one listing)."""
    folder = run_folder(run_id)
    return {str(b.name)[len(folder) :] for b in services.store.container.list_blobs(name_starts_with=folder)}


def _json_artifact(services: Services, run_id: str, name: str) -> Any:
    data = services.store.get_artifact(run_id, name)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _chart_alt(summary: RunSummary, label: str) -> str:
    if label == "loss" and summary.final_train_loss is not None:
        valid = ""
        if summary.final_valid_loss is not None:
            valid = f", final validation loss {summary.final_valid_loss:.4f}"
        return f"Training {label} by step: final training loss {summary.final_train_loss:.4f}{valid}"
    return f"Training and validation {label} by step"


def _event_time(event: Mapping[str, Any]) -> str:
    created = event.get("created_at")
    if isinstance(created, int | float):
        return datetime.fromtimestamp(created, UTC).strftime("%H:%M:%S")
    return str(created or "")
