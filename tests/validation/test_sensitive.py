"""Secret and PII detection: what is found, what is not, and that values are masked."""

from __future__ import annotations

import pytest

from shared.validation.sensitive import SensitiveScanner, scan

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
