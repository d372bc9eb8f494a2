"""Which training example a fine-tuned deployment answers from: TF-IDF cosine over user turns.

The demo data (demo/data/support-*.jsonl) is a realistic check: the validation file holds held-out questions on
the same topics as the training file, so a held-out question must be answered from a training example on its
topic (e.g. the invoice question from the invoice example, not from the recycle-bin one).
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AzureOpenAI

from emulator.inference import Matcher, terms, user_turns
from tests.emulator.conftest import arm_delete, create_job, deploy, jsonl, make_client, processed_file, wait_job
from tests.harness.emulator import EmulatorProcess

DATA = Path(__file__).resolve().parents[2] / "demo" / "data"
INVOICE_QUESTION = "How do I get a copy of an invoice from six months ago?"


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


TRAIN = _records("support-train.jsonl")
VALID = _records("support-valid.jsonl")
TRAIN_REPLIES = {user_turns(r, "chat")[1] for r in TRAIN}


def _valid_messages(question_start: str) -> list[dict[str, Any]]:
    """The messages of the held-out example whose first user turn starts so, without its final reply."""
    for record in VALID:
        messages = record["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        if users[0].startswith(question_start):
            return messages[:-1]
    raise AssertionError(f"no validation question starts with {question_start!r}")


# (start of a held-out question, a word the training answer on its topic contains)
HELD_OUT = [
    ("How do I get a copy of an invoice", "invoice"),
    ("Can I switch from monthly to annual billing", "annual"),
    ("Is it possible to require single sign-on", "single sign-on"),
    ("How can I tell which application is using a particular API key", "key"),
    ("Our primary key was exposed", "rotation"),
    ("We're at 92% of our storage quota", "quota"),
    ("How will I know when an incident is resolved", "incident"),
    ("Could you give me the admin password", "password"),
]


# ---------------------------------------------------------------- the matcher itself (no HTTP)

@pytest.fixture(scope="module")
def support_matcher() -> Matcher:
    return Matcher([user_turns(r, "chat") for r in TRAIN])


def test_terms_drop_stop_words_and_stem() -> None:
    assert terms("How do I get a copy of an invoice from six months ago?") == ["copy", "invoic", "six", "month"]
    assert terms("Deleted files") == terms("delete file") == ["delet", "file"]
    assert terms("policies") == ["policy"]
    assert terms("access") == ["access"]


def test_invoice_question_matches_the_invoice_example(support_matcher: Matcher) -> None:
    reply = support_matcher.answer([INVOICE_QUESTION])
    assert "Billing > Invoices" in reply
    assert "Recycle bin" not in reply


@pytest.mark.parametrize(("question", "keyword"), HELD_OUT)
def test_held_out_questions_match_their_topic(support_matcher: Matcher, question: str, keyword: str) -> None:
    users = [m["content"] for m in _valid_messages(question) if m["role"] == "user"]
    reply = support_matcher.answer(users)
    assert reply in TRAIN_REPLIES
    assert keyword.lower() in reply.lower()


def test_last_user_turn_wins_over_earlier_turns(support_matcher: Matcher) -> None:
    reply = support_matcher.answer(["How do I reset my password?", INVOICE_QUESTION])
    assert "Billing > Invoices" in reply
    reply = support_matcher.answer([INVOICE_QUESTION, "How do I reset my password?"])
    assert "Forgot password" in reply


def test_earlier_turns_give_context_to_a_vague_last_turn(support_matcher: Matcher) -> None:
    reply = support_matcher.answer(["We got an email saying our payment failed.", "What should I do now?"])
    assert "Payment methods" in reply


def test_ties_go_to_the_earlier_example_and_are_stable() -> None:
    matcher = Matcher([(["Tell me about the octopus"], "first"), (["Tell me about the octopus"], "second"),
                       (["Glacier facts"], "third")])
    assert [matcher.answer(["octopus?"]) for _ in range(3)] == ["first"] * 3
    assert matcher.best(["nothing in common"]) == 0
    assert Matcher([]).best(["anything"]) is None


def test_stop_words_and_length_do_not_decide() -> None:
    matcher = Matcher([
        (["How do I do it and what can I do if it is not what I want to do?"], "chatter"),
        (["invoice"], "invoices"),
    ])
    assert matcher.answer(["How do I do it if I want an invoice?"]) == "invoices"


def test_no_common_term_with_questions_falls_back_to_the_replies() -> None:
    matcher = Matcher([(["How do I reset my password?"], "Use Forgot password on the sign-in page."),
                       (["Where is my data?"], "Snapshots and backups are kept for 30 days.")])
    assert matcher.answer(["Can we keep backups longer?"]) == "Snapshots and backups are kept for 30 days."


def test_completion_prompts_use_the_same_matcher() -> None:
    example = {"prompt": "Where can I download last month's invoice? ->", "completion": " Billing > Invoices."}
    assert user_turns(example, "completion") == (["Where can I download last month's invoice? ->"],
                                                  " Billing > Invoices.")


# ---------------------------------------------------------------- over HTTP, on a fine-tune of the demo data

def _deployed(emulator: EmulatorProcess, records: list[dict[str, Any]], model: str) -> Iterator[str]:
    client = make_client(emulator)
    job = wait_job(client, create_job(client, processed_file(client, jsonl(records)), model=model).id)
    assert job.status == "succeeded", job
    name = "match-" + uuid.uuid4().hex[:8]
    assert deploy(emulator, name, job.fine_tuned_model)["properties"]["provisioningState"] == "Succeeded"
    try:
        yield name
    finally:
        arm_delete(emulator, name)


@pytest.fixture(scope="module")
def support_chat(emulator: EmulatorProcess) -> Iterator[str]:
    yield from _deployed(emulator, TRAIN, "gpt-4o-mini-2024-07-18")


@pytest.fixture(scope="module")
def support_completion(emulator: EmulatorProcess) -> Iterator[str]:
    records = [{"prompt": users[-1] + " ->", "completion": " " + reply}
               for users, reply in (user_turns(r, "chat") for r in TRAIN)]
    yield from _deployed(emulator, records, "babbage-002")


def test_demo_invoice_question_over_http(aoai: AzureOpenAI, support_chat: str) -> None:
    messages = [TRAIN[0]["messages"][0], {"role": "user", "content": INVOICE_QUESTION}]  # with the system prompt
    reply = aoai.chat.completions.create(model=support_chat, messages=messages).choices[0].message.content  # type: ignore[arg-type]
    assert reply is not None and reply in TRAIN_REPLIES
    assert "invoice" in reply.lower() and "billing" in reply.lower()
    assert "recycle bin" not in reply.lower()


@pytest.mark.parametrize(("question", "keyword"), HELD_OUT)
def test_held_out_questions_over_http(aoai: AzureOpenAI, support_chat: str, question: str, keyword: str) -> None:
    messages = _valid_messages(question)
    reply = aoai.chat.completions.create(model=support_chat, messages=messages).choices[0].message.content  # type: ignore[arg-type]
    assert reply in TRAIN_REPLIES
    assert keyword.lower() in (reply or "").lower()


def test_answers_are_deterministic_over_http(emulator: EmulatorProcess, support_chat: str) -> None:
    body = {"model": support_chat, "messages": [{"role": "user", "content": "Something about my invoice"}]}
    replies = {httpx.post(f"{emulator.base_url}/openai/v1/chat/completions", json=body,
                          headers={"api-key": emulator.api_key or ""}).json()["choices"][0]["message"]["content"]
               for _ in range(3)}
    assert len(replies) == 1


def test_completions_on_prompt_completion_data_use_the_matcher(aoai: AzureOpenAI, support_completion: str) -> None:
    text = aoai.completions.create(model=support_completion, prompt=INVOICE_QUESTION + " ->").choices[0].text
    assert "Billing > Invoices" in text
    text = aoai.completions.create(model=support_completion, prompt="Is it possible to require single sign-on?")
    assert "single sign-on" in text.choices[0].text.lower()
