"""The base models the emulated resource offers, and what each of them can do.

Fine-tunable base models follow the wire contract; a few models that exist in Azure but cannot be
fine-tuned are listed too, so that a client's pre-flight check against `GET /models` can be exercised.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shared import open_weight

# 2024-07-18 00:00:00 UTC etc.: fixed, so that the model list is deterministic.
_CREATED = 1721260800
_DEPRECATION_FT = 1798761600  # 2027-01-01
_DEPRECATION_INFERENCE = 1830297600  # 2028-01-01


@dataclass(frozen=True)
class BaseModel:
    id: str
    fine_tune: bool
    chat: bool = True
    completion: bool = False
    embeddings: bool = False
    encoding: str = "o200k_base"
    max_example_tokens: int = 65_536
    methods: tuple[str, ...] = ("supervised",)
    usage_name: str = ""
    open_weight_format: str | None = None
    """An open-weight model: its ARM `model.format` (the provider's string). The catalogue lists it with
    `capabilities.fine_tune: false` although it can be fine-tuned (the platform gotcha, reproduced)."""

    @property
    def trainable(self) -> bool:
        return self.fine_tune or self.open_weight_format is not None

    def as_model(self) -> dict[str, Any]:
        return {
            "object": "model",
            "id": self.id,
            "created_at": _CREATED,
            "status": "succeeded",
            "capabilities": {
                "fine_tune": self.fine_tune,
                "inference": True,
                "completion": self.completion,
                "chat_completion": self.chat,
                "embeddings": self.embeddings,
            },
            "lifecycle_status": "generally-available",
            "deprecation": (
                {"fine_tune": _DEPRECATION_FT, "inference": _DEPRECATION_INFERENCE}
                if self.fine_tune
                else {"inference": _DEPRECATION_INFERENCE}
            ),
        }


BASE_MODELS: tuple[BaseModel, ...] = (
    # DPO: gpt-4o-2024-08-06, gpt-4.1-2025-04-14, gpt-4.1-mini-2025-04-14 (the DPO how-to's model table).
    BaseModel("gpt-4o-mini-2024-07-18", True, usage_name="GPT-4o-mini-finetune"),
    BaseModel("gpt-4o-2024-08-06", True, methods=("supervised", "dpo"), usage_name="GPT-4o-finetune"),
    BaseModel("gpt-4.1-2025-04-14", True, methods=("supervised", "dpo"), usage_name="GPT-4.1-finetune"),
    BaseModel("gpt-4.1-mini-2025-04-14", True, methods=("supervised", "dpo"), usage_name="GPT-4.1-mini-finetune"),
    BaseModel(
        "gpt-4.1-nano-2025-04-14",
        True,
        max_example_tokens=32_768,
        usage_name="GPT-4.1-nano-finetune",
    ),
    BaseModel("o4-mini-2025-04-16", True, methods=("reinforcement",), usage_name="o4-mini-finetune"),
    BaseModel(
        "gpt-35-turbo-0125", True, encoding="cl100k_base", max_example_tokens=16_385, usage_name="GPT-35-Turbo"
    ),
    BaseModel(
        "gpt-35-turbo-1106", True, encoding="cl100k_base", max_example_tokens=16_385, usage_name="GPT-35-Turbo"
    ),
    BaseModel(
        "babbage-002",
        True,
        chat=False,
        completion=True,
        encoding="cl100k_base",
        max_example_tokens=16_384,
        usage_name="Babbage-002",
    ),
    BaseModel(
        "davinci-002",
        True,
        chat=False,
        completion=True,
        encoding="cl100k_base",
        max_example_tokens=16_384,
        usage_name="Davinci-002",
    ),
    # Present in Azure, not fine-tunable.
    BaseModel("gpt-4o-2024-05-13", False, usage_name="GPT-4o"),
    BaseModel("gpt-4o-2024-11-20", False, usage_name="GPT-4o"),
    BaseModel("gpt-4-0613", False, encoding="cl100k_base", usage_name="GPT-4"),
    BaseModel(
        "text-embedding-3-small", False, chat=False, embeddings=True, encoding="cl100k_base", usage_name="Embeddings"
    ),
    # Open-weight models (shared/open_weight_models.json): fine-tunable with trainingType GlobalStandard, listed
    # with fine_tune false as the real catalogue does.
    *(
        BaseModel(m.id, False, methods=m.methods, usage_name=f"{m.id}-finetune", open_weight_format=m.arm_format)
        for m in open_weight.catalogue().models
    ),
)

_BY_ID = {m.id: m for m in BASE_MODELS}


def base_model(model_id: str) -> BaseModel | None:
    return _BY_ID.get(model_id)


@lru_cache(maxsize=4)
def encoding(name: str) -> Any:
    """tiktoken encoding, cached (TIKTOKEN_CACHE_DIR makes it work offline)."""
    import tiktoken

    return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding_name: str) -> int:
    if not text:
        return 0
    return len(encoding(encoding_name).encode(text, disallowed_special=()))
