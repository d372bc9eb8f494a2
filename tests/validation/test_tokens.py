"""Token counts against tiktoken directly, and the distributions against a hand-computed file."""

from __future__ import annotations

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.validation import ValidationOptions, validate
from shared.validation.statistics import default_epochs, estimate
from shared.validation.tokens import Tokenizer

from .examples import jsonl

TRICKY = [
    "",
    "hello world",
    "trailing spaces   ",
    "   leading",
    "line\nbreaks\r\n\n",
    "<|endoftext|> is text here",
    "<|endofprompt|>",
    "emoji 🤖🚀 and CJK 東京 and ключ",
    "numbers 1234567890 384,400",
    "x\ud800y lone surrogate",
    "café naïve Zürich",
    " ",
    "\n",
]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_counts_match_tiktoken(name: str) -> None:
    enc = tiktoken.get_encoding(name)
    expected = [len(enc.encode_ordinary(s)) for s in TRICKY]
    assert Tokenizer(name).count_many(TRICKY).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=30))
def test_batched_counts_equal_one_by_one(texts: list[str]) -> None:
    tok = Tokenizer("o200k_base")
    enc = tiktoken.get_encoding("o200k_base")
    assert tok.count_many(texts).tolist() == [len(enc.encode_ordinary(t)) for t in texts]


def _example_tokens(enc: tiktoken.Encoding, messages: list[dict[str, str]]) -> int:
    """The documented convention, written out: 3 per example, 3 + role + content per message, name + 1."""
    n = 3
    for m in messages:
        n += 3 + len(enc.encode_ordinary(m["role"])) + len(enc.encode_ordinary(m["content"]))
        if "name" in m:
            n += 1 + len(enc.encode_ordinary(m["name"]))
    return n


@pytest.mark.parametrize(
    ("model", "encoding"), [("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-35-turbo-0125", "cl100k_base")]
)
def test_example_tokens_follow_the_convention(model: str, encoding: str) -> None:
    enc = tiktoken.get_encoding(encoding)
    msgs = [
        {"role": "system", "content": "You are a helpful assistant that answers in French."},
        {"role": "user", "content": "What is the capital of France?", "name": "alice"},
        {"role": "assistant", "content": "La capitale de la France est Paris."},
    ]
    report = validate(jsonl([{"messages": msgs}] * 1), model=model, options=ValidationOptions(min_examples=1))
    assert report.tokens is not None
    assert report.tokens.tokenizer == encoding
    assert report.tokens.total == _example_tokens(enc, msgs)
    assert report.tokens.assistant_tokens_per_example is not None
    assert report.tokens.assistant_tokens_per_example.max == len(enc.encode_ordinary(msgs[2]["content"]))


def test_distributions_hand_computed() -> None:
    # messages per example: 3,3,3,3,3,5,5,5,7,9 (one user+assistant pair = 2, plus a system message)
    sizes = [3, 3, 3, 3, 3, 5, 5, 5, 7, 9]
    examples = []
    for i, size in enumerate(sizes):
        msgs = [{"role": "system", "content": "a"}]
        for _ in range((size - 1) // 2):
            msgs += [{"role": "user", "content": "a"}, {"role": "assistant", "content": "a" if i else "a a"}]
        examples.append({"messages": msgs})
    report = validate(jsonl(examples), options=ValidationOptions(check_pii=False))
    t = report.tokens
    assert t is not None and t.messages_per_example is not None and t.tokens_per_example is not None
    m = t.messages_per_example
    # sorted: 3 3 3 3 3 5 5 5 7 9; mean 4.6; median (3+5)/2; p10 at rank 0.9 -> 3; p90 at rank 8.1 -> 7 + 0.1*2
    assert (m.min, m.mean, m.median, m.p10, m.p90, m.max) == (3, 4.6, 4, 3, pytest.approx(7.2), 9)
    # every message here is 3 + 1 (role) + 1 ("a") = 5 tokens, plus 3 per example; "a a" is 2 tokens
    per_example = [3 + 5 * s for s in sizes]
    per_example[0] += 1
    assert t.total == sum(per_example)
    assert (t.tokens_per_example.min, t.tokens_per_example.max) == (min(per_example), max(per_example))
    a = t.assistant_tokens_per_example
    assert a is not None and (a.min, a.max) == (1, 4)  # 1 pair with "a" ... 4 pairs


@pytest.mark.parametrize(
    ("n", "epochs"),
    [(1, 25), (3, 25), (5, 20), (10, 10), (33, 3), (34, 3), (100, 3), (8333, 3), (8334, 2), (12_500, 2), (25_001, 1)],
)
def test_default_epochs_rule(n: int, epochs: int) -> None:
    assert default_epochs(n) == epochs


def test_estimate_and_cost() -> None:
    e = estimate(10, 1_000, n_epochs=None, price_per_million_tokens=25.0)
    assert (e.n_epochs, e.billed_tokens, e.cost, e.epochs_source) == (10, 10_000, 0.25, "default")
    e = estimate(10, 1_000, n_epochs=2, price_per_million_tokens=None)
    assert (e.n_epochs, e.billed_tokens, e.cost, e.epochs_source) == (2, 2_000, None, "option")


def test_billed_tokens_cap_at_the_limit() -> None:
    long = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "word " * 500}]}
    short = {"messages": [{"role": "user", "content": "y"}, {"role": "assistant", "content": "ok"}]}
    report = validate(
        jsonl([long] + [dict(short, n=i) for i in range(11)]),
        options=ValidationOptions(tokens_per_example_limit=100, check_pii=False, n_epochs=1),
    )
    assert report.tokens is not None and report.estimate is not None
    assert report.tokens.examples_over_limit == 1
    assert report.tokens.billed_per_epoch == report.tokens.total - (report.tokens.tokens_per_example.max - 100)  # type: ignore[union-attr]
    assert report.estimate.billed_tokens == report.tokens.billed_per_epoch
