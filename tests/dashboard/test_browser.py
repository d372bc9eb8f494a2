"""The dashboard in a real browser: Debian's chromium driven by Playwright, against the local stack.

One stack (Azurite + the Azure OpenAI emulator + devhost running function_app.py) for the module, with real
runs in several states: deployed, gated, rejected, failed in the service's words, and one still training
(its job stuck in the queue) that is cancelled while its page is open. The tests assert what a person sees,
and save a screenshot of every page under `test-output/dashboard/`.

Needs /usr/bin/chromium (`apt-get install -y chromium`; `make test` installs it). Playwright's own browser
download is never used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devstack import Stack
from shared.metrics import MetricsSummary
from shared.runs import RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import drop_file
from tests.harness.runs import wait_for_run

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "demo" / "data"
OUTPUT = Path(os.environ.get("TEST_OUTPUT_DIR", REPO / "test-output")) / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@dataclass
class Runs:
    stack: Stack
    services: Services
    ids: dict[str, str]

    def url(self, path: str = "", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {**params, "code": self.stack.function_key}.items())
        return f"{self.stack.http_url}/dashboard{path}?{query}"


def _marked(marker: str) -> bytes:
    """The demo's training file with an emulator scenario marker in the first user message."""
    lines = (DATA / "support-train.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    next(m for m in first["messages"] if m["role"] == "user")["content"] += f" {marker}"
    return ("\n".join([json.dumps(first), *lines[1:]]) + "\n").encode()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    settings = {"TRAINING_POLL_SCHEDULE": "*/1 * * * * *", "PRICE_PER_MILLION_TRAINING_TOKENS": "3"}
    with Stack(tmp_path_factory.mktemp("stack"), extra_settings=settings) as stack:
        services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
        services.ensure_storage()
        tmp = tmp_path_factory.mktemp("files")
        (tmp / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
        for name, marker in (("failing.jsonl", "EMULATOR_SCENARIO:job_failure"),
                             ("queued.jsonl", "EMULATOR_SCENARIO:stuck_queued")):
            (tmp / name).write_bytes(_marked(marker))
        ids = {}
        _, ids["deployed"] = drop_file(
            services, str(DATA / "support-train.jsonl"), name="team-a/support.jsonl",
            validation_path=str(DATA / "support-valid.jsonl"),
            metadata={"deployment_name": "support-browser", "suffix": "browser"},
        )
        _, ids["gated"] = drop_file(
            services, str(DATA / "support-train.jsonl"), name="strict.jsonl",
            metadata={"gate_max_train_loss": "0.01", "validation_split": "0"},
        )
        _, ids["rejected"] = drop_file(services, str(tmp / "bad.jsonl"), name="bad.jsonl")
        _, ids["failed"] = drop_file(services, str(tmp / "failing.jsonl"), name="failing.jsonl",
                                     metadata={"validation_split": "0"})
        _, ids["training"] = drop_file(services, str(tmp / "queued.jsonl"), name="queued.jsonl",
                                       metadata={"validation_split": "0"})
        for state in ("deployed", "gated", "rejected", "failed"):
            record = wait_for_run(services, ids[state], emulator_url=stack.emulator_url)
            assert record.state.value == state, record.model_dump_json(indent=1)[:3000]
        wait_for_run(services, ids["training"], emulator_url=stack.emulator_url,
                     until=lambda r: r.state == RunState.TRAINING and r.job.id is not None)
        yield Runs(stack, services, ids)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium (make test does)"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
    )
    page.on(  # a page's own status is asserted by its test; anything it loads must load
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and r.request.resource_type != "document"
        else None,
    )
    yield page
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert problems == [], problems  # no script error, no failed resource, no CSP violation


def _state_of_row(page: Page, run_id: str) -> str:
    return page.locator(f'tr[data-run="{run_id}"] [data-state]').inner_text()


def test_the_runs_page_lists_every_run_newest_first_with_its_state(runs: Runs, page: Page) -> None:
    response = page.goto(runs.url())
    assert response is not None and response.status == 200
    expect(page).to_have_title("Fine-tuning runs - fine-tuning autopilot")
    expect(page.get_by_role("heading", level=1)).to_have_text("Fine-tuning runs")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(5)
    order = rows.evaluate_all("rows => rows.map(r => r.dataset.run)")
    created = {rid: runs.services.store.get(rid).created_at for rid in runs.ids.values()}
    assert order == sorted(created, key=lambda rid: created[rid], reverse=True)
    for state, run_id in runs.ids.items():
        assert _state_of_row(page, run_id) == state
    deployed = page.locator(f'tr[data-run="{runs.ids["deployed"]}"]')
    expect(deployed).to_contain_text("team-a/support.jsonl")
    expect(deployed).to_contain_text("deployed as support-browser")
    expect(deployed).to_contain_text("69")
    expect(page.locator(f'tr[data-run="{runs.ids["gated"]}"]')).to_contain_text("failed")  # the gate's verdict
    expect(page.locator(f'tr[data-run="{runs.ids["failed"]}"]')).to_contain_text("internalFailure")
    # a run is still training: the page says it refreshes itself
    expect(page.get_by_role("status")).to_contain_text("Refreshing every 5 s")


def test_filtering_by_state_with_the_keyboard(runs: Runs, page: Page) -> None:
    page.goto(runs.url())
    page.get_by_label("State").select_option("rejected")
    page.get_by_role("button", name="Filter").press("Enter")
    page.wait_for_url("**state=rejected**")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(1)
    assert _state_of_row(page, runs.ids["rejected"]) == "rejected"
    expect(page.locator("caption")).to_contain_text("1 matching")
    # the key travels with the form and every link: the run link opens with Enter
    page.locator(f'tr[data-run="{runs.ids["rejected"]}"] a').focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/dashboard/runs/{runs.ids['rejected']}?code=*")
    expect(page.get_by_role("heading", level=1)).to_contain_text(runs.ids["rejected"])


def test_a_deployed_run_shows_charts_that_load_the_smoke_test_and_its_timeline(runs: Runs, page: Page) -> None:
    run_id = runs.ids["deployed"]
    page.goto(runs.url(f"/runs/{run_id}"))
    expect(page.locator("h1 [data-state]")).to_have_text("deployed")
    charts = page.locator("figure img")
    expect(charts).to_have_count(2)
    for i in range(2):
        charts.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=charts.nth(i).element_handle())
        assert charts.nth(i).evaluate("img => img.naturalWidth") == 1200
    expect(charts.first).to_have_attribute("alt", "Training loss by step: final training loss " +
                                           f"{runs.services.store.get(run_id).metrics.final_train_loss:.4f}, " +
                                           "final validation loss " +
                                           f"{_valid_loss(runs.services.store.get(run_id).metrics):.4f}")
    deployment = page.get_by_role("region", name="Deployment")
    expect(deployment).to_contain_text("support-browser")
    expect(deployment).to_contain_text("passed in")
    timeline = page.locator("#timeline li strong")
    assert timeline.all_inner_texts()[0] == "received" and timeline.all_inner_texts()[-1] == "deployed"
    expect(page.locator("#timeline")).to_contain_text("lasted")
    expect(page.get_by_role("region", name="Job events")).to_contain_text("Job succeeded.")
    summary = page.get_by_role("region", name="Summary")
    expect(summary).to_contain_text("Training cost")
    record = runs.services.store.get(run_id)
    assert record.job.trained_tokens
    expect(summary).to_contain_text(f"{record.job.trained_tokens * 3 / 1e6:,.2f}")
    # every artifact link answers (the key travels with it)
    links = page.locator("#artifacts a")
    names = links.all_inner_texts()
    assert {"validation.json", "metrics.json", "results.csv", "events.json", "loss.png", "accuracy.png"} <= set(names)
    for href in links.evaluate_all("links => links.map(a => a.href)"):
        assert httpx.get(href).status_code == 200, href
    expect(page.get_by_role("status")).to_have_count(0)  # terminal: no refresh


def _valid_loss(metrics: MetricsSummary | None) -> float:
    assert metrics is not None
    value = metrics.final_full_valid_loss
    return float(value if value is not None else metrics.final_valid_loss)


def test_a_failed_run_shows_the_services_words(runs: Runs, page: Page) -> None:
    run_id = runs.ids["failed"]
    record = runs.services.store.get(run_id)
    assert record.error is not None
    page.goto(runs.url(f"/runs/{run_id}"))
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"Failed: {record.error.code}")
    expect(alert.locator("#error-message")).to_have_text(record.error.message)


def test_a_rejected_run_shows_its_errors_grouped_by_code(runs: Runs, page: Page) -> None:
    page.goto(runs.url(f"/runs/{runs.ids['rejected']}"))
    expect(page.get_by_role("alert")).to_contain_text("Rejected: validation_failed")
    errors = page.locator("#errors")
    expect(errors).to_contain_text("invalid_json × 1")
    expect(errors).to_contain_text("line 2: invalid JSON at column 1")
    expect(errors).to_contain_text("too_few_examples")
    expect(page.get_by_role("region", name="Validation")).to_contain_text("Invalid: 2 examples")
    expect(page.get_by_role("region", name="Training charts")).to_contain_text("No charts yet")


def test_a_gated_run_shows_the_gate_checks(runs: Runs, page: Page) -> None:
    page.goto(runs.url(f"/runs/{runs.ids['gated']}"))
    gate = page.get_by_role("region", name="Evaluation: quality gate")
    row = gate.locator("tr", has_text="max_train_loss")
    expect(row).to_contain_text("0.0100")
    expect(row).to_contain_text("failed")
    expect(page.get_by_role("region", name="Deployment")).to_contain_text("Not deployed.")


def test_an_active_run_page_refreshes_itself_until_the_run_ends(runs: Runs, page: Page) -> None:
    run_id = runs.ids["training"]
    page.goto(runs.url(f"/runs/{run_id}"))
    expect(page.locator("h1 [data-state]")).to_have_text("training")
    expect(page.locator("#timeline li.ongoing")).to_contain_text("so far")
    expect(page.get_by_role("status")).to_contain_text("Refreshing every 5 s")
    record = runs.services.store.get(run_id)
    assert record.job.id is not None
    runs.services.aoai.jobs.cancel(record.job.id)
    wait_for_run(runs.services, run_id, emulator_url=runs.stack.emulator_url)
    # no reload: the page's own refresh brings the new state in
    expect(page.locator("h1 [data-state]")).to_have_text("cancelled", timeout=30_000)
    expect(page.get_by_role("status")).to_have_text("The run is no longer active: refreshing stopped.")


def test_pages_need_the_function_key_and_an_unknown_run_is_a_404_page(runs: Runs, page: Page) -> None:
    assert httpx.get(f"{runs.stack.http_url}/dashboard").status_code == 401
    response = page.goto(runs.url("/runs/no-such-run"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("No such run")
    headers = response.headers
    assert headers["referrer-policy"] == "no-referrer" and "frame-ancestors 'none'" in headers[
        "content-security-policy"
    ]


def test_the_pages_are_labelled_for_assistive_technology(runs: Runs, page: Page) -> None:
    page.goto(runs.url())
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('select, input:not([type=hidden]), button')]
              .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !el.textContent.trim()).map(el => el.outerHTML)"""
    )
    assert unlabeled == []
    assert page.evaluate("document.documentElement.lang") == "en"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.goto(runs.url(f"/runs/{runs.ids['deployed']}"))
    assert page.locator("img:not([alt])").count() == 0
    headings = page.locator("h1, h2").all_inner_texts()
    assert headings[1:] == ["Summary", "Validation", "Training charts", "Deployment", "History", "Job events",
                            "Artifacts"]


@pytest.mark.parametrize("which", ["runs", "deployed", "rejected", "gated", "failed"])
def test_axe_finds_no_accessibility_violation(runs: Runs, page: Page, which: str) -> None:
    """axe-core (Deque's engine, WCAG 2 A/AA rules: contrast, labels, landmarks, names, ...) on each page."""
    page.goto(runs.url() if which == "runs" else runs.url(f"/runs/{runs.ids[which]}"))
    page.locator("figure img").evaluate_all("imgs => Promise.all(imgs.map(i => i.decode().catch(() => null)))")
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]}})
    assert results.violations_count == 0, results.generate_report()
