"""Collecting errors and warnings: every one counted, a bounded number kept for the report."""

from __future__ import annotations

from collections import Counter

from .codes import CODES, Code
from .report import Issue, Which


class IssueLog:
    """Counts every issue; keeps at most `cap` per code, then picks the listed ones at the end."""

    def __init__(self, max_errors: int, max_warnings: int) -> None:
        self.max_errors = max_errors
        self.max_warnings = max_warnings
        self.counts: Counter[str] = Counter()
        self._kept: dict[Code, list[Issue]] = {}
        self.error_count = 0
        self.warning_count = 0

    def add(self, code: Code, line: int | None, message: str, file: Which = "training", *, count: int = 1) -> None:
        self.counts[code.value] += count
        if CODES[code].severity == "error":
            self.error_count += count
            cap = self.max_errors
        else:
            self.warning_count += count
            cap = self.max_warnings
        kept = self._kept.setdefault(code, [])
        if len(kept) < cap:
            kept.append(Issue(line=line, code=code.value, message=message, file=file))

    def add_count(self, code: Code, count: int) -> None:
        """Count `count` more issues of `code` without listing them (past what a report can list)."""
        if count <= 0:
            return
        self.counts[code.value] += count
        if CODES[code].severity == "error":
            self.error_count += count
        else:
            self.warning_count += count

    def listed(self, severity: str) -> list[Issue]:
        """The issues to list: the first of each code, then the rest in file and line order, up to the cap."""
        cap = self.max_errors if severity == "error" else self.max_warnings
        groups = [v for k, v in self._kept.items() if CODES[k].severity == severity and v]
        firsts = [g[0] for g in groups]
        rest = [i for g in groups for i in g[1:]]
        chosen = firsts[:cap] + sorted(rest, key=_order)[: max(0, cap - len(firsts))]
        return sorted(chosen, key=_order)


def _order(issue: Issue) -> tuple[int, int, str]:
    return (0 if issue.file == "training" else 1, issue.line or 0, issue.code)
