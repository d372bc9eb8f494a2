"""NCRONTAB schedules as the Functions timer trigger reads them: six fields, seconds first, UTC.

    {second} {minute} {hour} {day} {month} {day-of-week}

Fields take ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, and month/day names
(``JAN``, ``MON``). Day-of-month and day-of-week must both match (NCrontab's rule, unlike Vixie cron's "or").
A TimeSpan (``"00:00:30"``) is also accepted: it fires every interval after the host starts, as the host does.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from devhost.config import ConfigError, parse_timespan

_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}), ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day-of-week", 0, 6, _DAYS),
)


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> list[int]:
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.strip().upper()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise ConfigError(f"NCRONTAB {name} field: {token!r} is not a number")
        value = int(token)
        if name == "day-of-week" and value == 7:
            value = 0
        if not low <= value <= high:
            raise ConfigError(f"NCRONTAB {name} field: {value} is outside {low}-{high}")
        return value

    for part in text.split(","):
        range_text, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ConfigError(f"NCRONTAB {name} field: step must be positive")
        if range_text in ("*", "?"):
            start, end = low, high
        elif "-" in range_text:
            a, b = range_text.split("-", 1)
            start, end = number(a), number(b)
        else:
            start = number(range_text)
            end = high if step_text else start
        if start > end:
            raise ConfigError(f"NCRONTAB {name} field: range {range_text!r} runs backwards")
        values.update(range(start, end + 1, step))
    return sorted(values)


class Schedule:
    """A parsed timer schedule; :meth:`next_after` gives the next occurrence strictly after a UTC time."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        self.interval: timedelta | None = None
        if re.fullmatch(r"(\d+\.)?\d+:\d+:\d+", self.expression):
            seconds = parse_timespan(self.expression, where="timer schedule")
            if seconds <= 0:
                raise ConfigError(f"timer schedule {expression!r}: interval must be positive")
            self.interval = timedelta(seconds=seconds)
            return
        parts = self.expression.split()
        if len(parts) != 6:
            raise ConfigError(
                f"timer schedule {expression!r}: NCRONTAB needs 6 fields "
                "{second} {minute} {hour} {day} {month} {day-of-week}"
            )
        fields = [_parse_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        self.seconds, self.minutes, self.hours, self.days, self.months, self.weekdays = fields

    def next_after(self, when: datetime) -> datetime:
        when = when.astimezone(UTC)
        if self.interval is not None:
            return when + self.interval
        t = when.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(366 * 8):
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            # Python: Monday=0; NCRONTAB: Sunday=0
            if t.day not in self.days or (t.weekday() + 1) % 7 not in self.weekdays:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            found = self._first_time_at_or_after(t.hour, t.minute, t.second)
            if found is not None:
                return t.replace(hour=found[0], minute=found[1], second=found[2])
            t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
        raise ConfigError(f"timer schedule {self.expression!r} never fires")

    def _first_time_at_or_after(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        for h in self.hours:
            if h < hour:
                continue
            for m in self.minutes:
                if h == hour and m < minute:
                    continue
                for s in self.seconds:
                    if h == hour and m == minute and s < second:
                        continue
                    return h, m, s
        return None

    def shortest_interval(self, now: datetime) -> timedelta:
        """Gap between the next two occurrences (the host uses it to default ``useMonitor``)."""
        first = self.next_after(now)
        return self.next_after(first) - first
