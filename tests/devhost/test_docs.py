"""docs/devhost.md shows this app's ready line: its function counts must be the app's."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from devhost.functions import discover, load_app

REPO = Path(__file__).resolve().parents[2]


def test_the_documented_ready_line_counts_this_apps_functions() -> None:
    specs = discover(load_app("function_app", REPO), os.environ)
    kinds = Counter(spec.kind for spec in specs)
    text = (REPO / "docs" / "devhost.md").read_text("utf-8")
    m = re.search(r"devhost ready: (\d+) functions \(blob: (\d+), queue: (\d+), timer: (\d+), http: (\d+) at", text)
    assert m is not None, "docs/devhost.md has no ready line"
    documented = tuple(int(x) for x in m.groups())
    assert documented == (len(specs), kinds["blob"], kinds["queue"], kinds["timer"], kinds["http"])


def test_the_readme_and_the_devhost_doc_never_point_outside_the_repository() -> None:
    for doc in (REPO / "README.md", REPO / "docs" / "devhost.md"):
        assert "../shared" not in doc.read_text("utf-8"), doc.name
