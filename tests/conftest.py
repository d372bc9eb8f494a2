"""Test-wide set-up: offline tiktoken, and the real local services as session fixtures.

Fixtures live in `tests/harness/` (one module per service) and are loaded as pytest plugins here.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

_TIKTOKEN = Path(__file__).resolve().parents[1].parent / "shared" / "tiktoken"
if _TIKTOKEN.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_TIKTOKEN))

pytest_plugins = [
    "tests.harness.azurite",
    "tests.harness.emulator",
]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs several workers, each with its own Azurite and emulator), keep a
    module's tests on one worker when they share a module-scoped fixture (a running stack, a browser, a
    trained job), so it is set up once, not once per worker (`--dist loadgroup` reads the group)."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        fixture_defs = item._fixtureinfo.name2fixturedefs.values()
        if any(d.scope in ("module", "package") for defs in fixture_defs for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.hookimpl(trylast=True)  # after xdist's hook: the groups must have reached the node ids it schedules by
def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.getoption("loadgroup", default=False):
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(
            f"--dist loadgroup is not grouping ({lost[0]} has no @group suffix): this pytest and pytest-xdist "
            "do not work together (pytest-dev/pytest-xdist#1386); use the versions in requirements-dev.txt"
        )
