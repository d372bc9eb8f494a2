"""Reinforcement fine-tuning in the emulator: the job create's checks and the simulated reward curve.

What is checked at `POST /fine_tuning/jobs` with `method.type: reinforcement` (docs/emulator.md):

* the model supports RFT (the catalogue's `methods`; o4-mini-2025-04-16 here) - else the usual method 400;
* `method.reinforcement.grader` is one grader of the four types Azure's v1 spec allows (`string_check`,
  `text_similarity`, `score_model`, `multi`); a `python` grader or anything else is a 400 naming it;
* the RFT hyperparameters (`eval_interval`, `eval_samples`: integers >= 1; `compute_multiplier` > 0;
  `reasoning_effort`: default, low, medium, high; each may be `auto`);
* a validation file is given ("Both a training and a validation dataset must be provided");
* the files are in the RFT format (chat, the last message the user's, no assistant) and have no system message.

A grader that reads an `{{item.<field>}}` the training examples lack is *not* refused: the service scores such
samples 0 without an error (Microsoft's fine-tuning skill), so the job trains with a flat zero reward.
"""
from __future__ import annotations

import math
import random
import re
from functools import lru_cache
from typing import Any

from .errors import invalid

GRADER_TYPES = ("string_check", "text_similarity", "score_model", "multi")
MULTI_GRADER_TYPES = ("string_check", "text_similarity", "score_model")
REASONING_EFFORTS = ("default", "low", "medium", "high")
REWARD_KEYS = (
    "train_reward_mean",
    "valid_reward_mean",
    "train_reasoning_tokens_mean",
    "valid_reasoning_tokens_mean",
    "train_sample_parse_error_count",
    "train_other_error_count",
)
"""The results.csv columns of an RFT job: the RFT how-to's names, then the fine-tuning skill's error counts."""
CHECKPOINT_REWARD_KEYS = ("train_mean_reward", "full_valid_mean_reward")
"""Checkpoint metrics as the fine-tuning skill's scripts read them (`cp.metrics.train_mean_reward`)."""
_ITEM_REF = re.compile(r"\{\{\s*item\.([A-Za-z0-9_.]+)\s*\}\}")


def check_method(inner: dict[str, Any], body: dict[str, Any]) -> None:
    grader = inner.get("grader")
    _check_grader(grader, "method.reinforcement.grader", GRADER_TYPES)
    if isinstance(grader, dict) and grader.get("type") == "multi":
        graders = grader.get("graders")
        if not isinstance(graders, dict) or not graders:
            raise invalid("A multi grader needs 'graders', an object of named graders.",
                          "method.reinforcement.grader.graders")
        for key, sub in graders.items():
            _check_grader(sub, f"method.reinforcement.grader.graders.{key}", MULTI_GRADER_TYPES)
        if not isinstance(grader.get("calculate_output"), str) or not grader["calculate_output"]:
            raise invalid("A multi grader needs 'calculate_output'.", "method.reinforcement.grader.calculate_output")
    hp = inner.get("hyperparameters") or {}
    where = "method.reinforcement.hyperparameters"
    for key in ("eval_interval", "eval_samples"):
        value = hp.get(key)
        if value is not None and value != "auto" and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise invalid(f"{where}.{key} must be a positive integer or 'auto'.", f"{where}.{key}")
    cm = hp.get("compute_multiplier")
    if cm is not None and cm != "auto" and (not isinstance(cm, (int, float)) or isinstance(cm, bool) or cm <= 0):
        raise invalid(f"{where}.compute_multiplier must be a positive number or 'auto'.", f"{where}.compute_multiplier")
    effort = hp.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise invalid(f"{where}.reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}.",
                      f"{where}.reasoning_effort")
    if not body.get("validation_file"):
        raise invalid("Reinforcement fine-tuning needs a validation file as well as a training file.",
                      "validation_file")


def _check_grader(grader: Any, where: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(grader, dict):
        raise invalid("Reinforcement fine-tuning needs a grader (an object).", where)
    kind = grader.get("type")
    if kind not in allowed:
        raise invalid(f"The grader type '{kind}' is not supported here; use one of {', '.join(allowed)}.",
                      f"{where}.type")
    if not grader.get("name"):
        raise invalid("The grader needs a 'name'.", f"{where}.name")
    needed = {"string_check": ("input", "reference", "operation"), "text_similarity": ("input", "reference",
              "evaluation_metric"), "score_model": ("model", "input"), "multi": ("graders",)}[kind]
    for key in needed:
        if key not in grader:
            raise invalid(f"The {kind} grader needs '{key}'.", f"{where}.{key}")


def check_examples(examples: list[dict[str, Any]], param: str) -> None:
    """RFT files: no system message (the RFT how-to, May 2025: "system messages aren't supported")."""
    for number, example in enumerate(examples, start=1):
        for message in example.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "system":
                raise invalid(f"Reinforcement fine-tuning does not support system messages (example {number} of "
                              f"{param}); use a developer message.", param)


def item_refs(grader: Any) -> list[str]:
    """The `{{item.<path>}}` paths anywhere in the grader."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.extend(_ITEM_REF.findall(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(grader)
    return out


def fields_present(examples: list[dict[str, Any]], refs: list[str]) -> bool:
    """Whether every example has every field the grader reads (else the service scores 0, silently)."""
    for example in examples:
        for ref in refs:
            cur: Any = example
            for part in ref.split("."):
                if not isinstance(cur, dict) or part not in cur:
                    return False
                cur = cur[part]
    return True


def reward_row(plan: dict[str, Any], step: int, total: int, evaluate: bool) -> dict[str, Any]:
    """The RFT columns of one step: a logistic rise of the mean reward from the base model's level, noisy;
    parse errors falling; reasoning tokens drifting. A grader that reads absent fields: a flat zero reward."""
    curve = _curve(plan["seed"], plan["data_sha"])
    rng = random.Random(f"{plan['seed']}:{plan['data_sha']}:reward:{step}")
    progress = step / total
    if plan.get("grader_fields_ok", True):
        smooth = curve["start"] + (curve["end"] - curve["start"]) / (1 + math.exp(-curve["rate"] * (progress - 0.4)))
        train = min(1.0, max(0.0, smooth + rng.gauss(0, 0.03)))
    else:
        smooth = train = 0.0
    row: dict[str, Any] = {
        "train_reward_mean": round(train, 5),
        "valid_reward_mean": round(max(0.0, smooth - 0.02 + rng.gauss(0, 0.015)), 5) if evaluate else None,
        "train_reasoning_tokens_mean": round(curve["tokens"] * (1 + 0.4 * progress) + rng.gauss(0, 20), 1),
        "valid_reasoning_tokens_mean": round(curve["tokens"] * (1 + 0.38 * progress), 1) if evaluate else None,
        "train_sample_parse_error_count": max(0, round(curve["parse"] * (1 - progress) + rng.gauss(0, 0.5))),
        "train_other_error_count": 0,
    }
    return row


@lru_cache(maxsize=256)
def _curve(seed: int, data_sha: str) -> dict[str, float]:
    rng = random.Random(f"{seed}:{data_sha}:rft")
    start = 0.25 + 0.15 * rng.random()  # the base model passes some: the skill's 25-50 % failure target
    return {"start": start, "end": min(0.95, start + 0.35 + 0.2 * rng.random()), "rate": 6 + 3 * rng.random(),
            "tokens": 600 + 400 * rng.random(), "parse": 3 + 4 * rng.random()}
