"""Per-model facts the validator needs: tokenizer, tokens-per-example limit, accepted formats.

From docs/azure-openai-contract.md ("Limits"). Entries marked *assumed* are not in the contract:
gpt-4 (0613) keeps its 8,192-token context, babbage-002 / davinci-002 their 16,384.
Ids are matched by longest prefix, so dated versions (gpt-4o-mini-2024-07-18) and fine-tuned
checkpoints (gpt-4o-mini-2024-07-18.ft-...) resolve to their family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import DataFormat

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
CHAT_FORMATS: frozenset[DataFormat] = frozenset({"chat", "preference"})
COMPLETION_FORMATS: frozenset[DataFormat] = frozenset({"completion"})


@dataclass(frozen=True)
class ModelProfile:
    family: str
    tokenizer: str
    tokens_per_example_limit: int
    formats: frozenset[DataFormat]
    known: bool = True

    @property
    def is_chat(self) -> bool:
        return "chat" in self.formats


_TABLE: tuple[ModelProfile, ...] = (
    ModelProfile("gpt-4o-mini", "o200k_base", 65_536, CHAT_FORMATS),
    ModelProfile("gpt-4o", "o200k_base", 65_536, CHAT_FORMATS),
    ModelProfile("gpt-4.1-nano", "o200k_base", 32_768, CHAT_FORMATS),
    ModelProfile("gpt-4.1-mini", "o200k_base", 65_536, CHAT_FORMATS),
    ModelProfile("gpt-4.1", "o200k_base", 65_536, CHAT_FORMATS),
    ModelProfile("o4-mini", "o200k_base", 65_536, CHAT_FORMATS),
    ModelProfile("o3", "o200k_base", 65_536, CHAT_FORMATS),
    ModelProfile("o1", "o200k_base", 65_536, CHAT_FORMATS),
    ModelProfile("gpt-35-turbo", "cl100k_base", 16_385, CHAT_FORMATS),
    ModelProfile("gpt-3.5-turbo", "cl100k_base", 16_385, CHAT_FORMATS),
    ModelProfile("gpt-4", "cl100k_base", 8_192, CHAT_FORMATS),  # assumed
    ModelProfile("babbage-002", "cl100k_base", 16_384, COMPLETION_FORMATS),  # assumed
    ModelProfile("davinci-002", "cl100k_base", 16_384, COMPLETION_FORMATS),  # assumed
)
_BY_LENGTH = sorted(_TABLE, key=lambda p: len(p.family), reverse=True)

UNKNOWN = ModelProfile("unknown", "o200k_base", 65_536, CHAT_FORMATS, known=False)

# Base models that DPO (preference data, method "dpo") supports: the DPO how-to's "model support" table
# (fine-tuning-direct-preference-optimization.md); fine-tunes of them too ("as long as they're a supported model").
DPO_MODELS: tuple[str, ...] = ("gpt-4o-2024-08-06", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14")


def supports_dpo(model: str) -> bool:
    """Whether `model` can be trained with DPO: a listed base model, a fine-tune `<base>.ft-...` of one, or an
    undated family name (`gpt-4.1-mini`) with a listed version."""
    name = model.strip().lower()
    return any(
        name == base or name.startswith(base + ".ft-") or base.startswith(name + "-") for base in DPO_MODELS
    )


def profile_for(model: str) -> ModelProfile:
    """The profile of `model`, or `UNKNOWN` (o200k_base, 65,536 tokens, chat) when no family matches."""
    name = model.strip().lower()
    for profile in _BY_LENGTH:
        if name == profile.family or name.startswith(profile.family + "-") or name.startswith(profile.family + "."):
            return profile
    return UNKNOWN
