"""Secret and PII detection: what is found, what is not, and that values are masked."""

from __future__ import annotations

import json

import pytest

from shared.validation import ValidationOptions, tokens, validate
from shared.validation.sensitive import CleanPrefixes, SensitiveScanner, scan

SECRETS = [
    b"sk-proj-AbCdEfGhIjKlMnOpQrStUvWx123",
    b"Authorization: Bearer abcdefghijklmnopqrstuvwxyz.0123",
    b"-----BEGIN OPENSSH PRIVATE KEY-----",
    b"AKIAIOSFODNN7EXAMPLE",
    b"ghp_" + b"a1B2" * 9,
    b"xoxb-123456789012-abcdefghij",
    b"DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + b"A" * 86 + b"==",
    b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    b'{\\"api_key\\": \\"0123456789abcdef0123\\"}',
]
CLEAN = [
    b"The task-based approach works with desk-top tools.",
    b"384,400 kilometers on 2024-07-18 at 3.14159265",
    b"tokens: 12,220,218 and version 1.2.3",
    b"An internationalization_and_localization_framework",
    b"email me @ the office",
]


@pytest.mark.parametrize("text", SECRETS)
def test_secrets_found_and_masked(text: bytes) -> None:
    found = [f for f in scan(b'{"content": "' + text + b'"}') if f.secret]
    assert found, text
    assert all(text.decode() not in f.masked for f in found)


@pytest.mark.parametrize("text", CLEAN)
def test_clean_text(text: bytes) -> None:
    assert scan(text) == []


@pytest.mark.parametrize("text", [b"jane.doe@contoso.com", b"+1 (425) 555-0100", b"020 7946 0958", b"555-123-4567"])
def test_pii(text: bytes) -> None:
    found = scan(b"contact: " + text + b" thanks")
    assert [f.secret for f in found] == [False]
    assert text.decode() not in found[0].masked


def test_lines_are_mapped_back_across_blocks() -> None:
    scanner = SensitiveScanner()
    found = []
    for n in range(1, 3001):
        found += scanner.add(n, b"x" * 400 + (b" sk-" + b"Z" * 30 if n % 1000 == 0 else b""))
    found += scanner.flush()
    assert sorted(f.line for f in found) == [1000, 2000, 3000]


# ---- a repeated clean prefix is scanned once (CleanPrefixes) ------------------------------------------------

PROMPT = "You are the support assistant of Contoso: answer briefly, cite the docs, never guess. " * 4


def _line(user: str, *, prompt: str = PROMPT, spacing: str = " ", first_key: str = "role") -> bytes:
    system = {"role": "system", "content": prompt}
    if first_key == "content":
        system = {"content": prompt, "role": "system"}
    messages = [system, {"role": "user", "content": user}, {"role": "assistant", "content": "Noted."}]
    sep = ("," + spacing, ":" + spacing)
    return json.dumps({"messages": messages}, ensure_ascii=False, separators=sep).encode("utf-8")


def _tricky_file() -> bytes:
    """Findings right after the prefix, at the start of the user's text, near the boundary, and lines the
    prefix must not be learnt from (a prompt with a secret, another key order, other escapes, no spaces)."""
    users = [
        "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx123 is my key",
        "write to anna@example.com or call +1 (555) 123-4567",
        "Bearer abcdefghijklmnopqrstuvwxyz.0123",
        "plain question, nothing to see",
        "api_key: 0123456789abcdef0123",
        '}, {"role": "user", "content": "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx999',
    ]
    lines = [_line(users[i % len(users)] + f" #{i}") for i in range(60)]
    lines += [_line(u, prompt=PROMPT + " Escalate to sk-proj-AbCdEfGhIjKlMnOpQrStUvWx777.") for u in users] * 3
    lines += [_line(u, first_key="content") for u in users] * 3
    lines += [_line(u, spacing="") for u in users] * 3
    lines += [_line(u).replace(b"Contoso", b"Conto\\u0073o") for u in users] * 3
    return b"\n".join(lines) + b"\n"


def test_reports_are_the_same_when_a_clean_prefix_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _tricky_file()
    learnt: list[CleanPrefixes] = []
    real_init = CleanPrefixes.__init__

    def init(self: CleanPrefixes, **kwargs: bool) -> None:
        real_init(self, **kwargs)
        learnt.append(self)

    monkeypatch.setattr(CleanPrefixes, "__init__", init)
    monkeypatch.setattr(tokens.TokenPipeline, "BATCH_CHARS", 4096)  # folds early: the prompt is known to repeat
    options = ValidationOptions(counting_process=False)
    skipping = validate(data, options=options).model_dump_json()
    assert learnt and learnt[0]._count == 2  # the plain prompt, with and without spaces; never the others
    monkeypatch.setattr(CleanPrefixes, "MAX", 0)  # learns nothing: every line scanned whole
    assert validate(data, options=options).model_dump_json() == skipping
    report = json.loads(skipping)
    assert report["counts"]["possible_secret"] > 60 and report["counts"]["possible_pii"] > 20


def test_a_prefix_is_learnt_only_when_it_is_one_clean_message() -> None:
    prefixes = CleanPrefixes(secrets=True, pii=True)
    line = _line("hello")
    assert prefixes.length(line) == 0
    prefixes.learn(line, PROMPT)
    skip = prefixes.length(line)
    assert line[:skip].endswith(b"}, ") and json.loads(line[: skip - 2] + b"]}")["messages"][0]["content"] == PROMPT
    assert prefixes.length(_line("another question")) == skip  # the same prefix on another line
    assert prefixes.length(_line("hello", prompt=PROMPT + "!")) == 0
    with_secret = PROMPT + " sk-proj-AbCdEfGhIjKlMnOpQrStUvWx123"
    for refused in (
        (_line("x", prompt=with_secret), with_secret),  # the prefix alone has a finding
        (_line("x", first_key="content"), PROMPT),  # the content is not the message's last value
        (_line("x"), PROMPT + "?"),  # not this line's prompt
    ):
        before = prefixes.misses
        prefixes.learn(*refused)
        assert prefixes.misses == before + 1
    for _ in range(CleanPrefixes.MAX_MISSES):
        prefixes.learn(_line("x"), "not in the line")
    assert not prefixes.learning  # a file it cannot learn from stops costing anything
