"""Reinforcement fine-tuning data: the rules of an RFT example, on top of the chat format's.

An RFT example is a chat example the model answers itself, graded by the job's grader (sources in
docs/validation.md, "Reinforcement fine-tuning data"):

* the final message is the user's: "The final 'message' in the data must be assigned a `user` role" (the RFT
  how-to); there is no assistant reply to learn, so the SFT rules "an assistant message" and "ends with the
  assistant" do not apply;
* no system message: "system messages aren't supported" (the how-to's first revision, May 2025); the how-to's
  example gives its instructions in a `developer` message;
* the fields beside `messages` are the grader's: "The data can contain extra fields and values for use by a
  grader", read as `{{item.<field>}}` (nested objects by dotted path). A field the grader reads that an example
  lacks makes the grader score 0 without an error (Microsoft's fine-tuning skill: "grader field name mismatch
  is SILENT"), so it is an error here, on that line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .codes import Code

SFT_ONLY_CODES = frozenset({Code.NO_ASSISTANT_MESSAGE, Code.UNRECOGNIZED_KEY})
"""Problems the chat checker reports that RFT data does not have: no assistant reply, grader fields beside
`messages`."""


def _has(obj: Any, path: Sequence[str]) -> bool:
    cur = obj
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return cur is not None


def check_example(obj: dict[str, Any], grader_fields: Iterable[Sequence[str]]) -> list[tuple[Code, str]]:
    """The RFT problems of one chat example (already checked as chat), in the order a reader fixes them."""
    problems: list[tuple[Code, str]] = []
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        return problems  # the chat checker reported it
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles[-1] != "user":
        problems.append((
            Code.RFT_FINAL_MESSAGE_NOT_USER,
            f"the last message is {roles[-1]!r}: in RFT data the final message is the user's and the model "
            "writes the answer (put the reference answer in a field the grader reads)",
        ))
    if "system" in roles:
        problems.append((
            Code.RFT_SYSTEM_MESSAGE,
            f"message {roles.index('system')} is a system message, which reinforcement fine-tuning does not "
            "support: give the instructions as a developer message",
        ))
    for path in grader_fields:
        if not _has(obj, path):
            dotted = ".".join(path)
            problems.append((
                Code.RFT_MISSING_GRADER_FIELD,
                f"the grader reads {{{{item.{dotted}}}}} but this example has no {dotted!r}: the grader would "
                "score it 0 without an error",
            ))
    return problems
