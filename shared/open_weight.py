"""Open-weight models (gpt-oss, Mistral, Llama, Qwen): which can be fine-tuned, and how they train and deploy.

The list is data, `shared/open_weight_models.json`, with its source and date (Microsoft's fine-tuning skill,
microsoft/azure-skills). It is the only authority here on whether such a model can be fine-tuned: the model
catalogue (`GET /models`) reports `capabilities.fine_tune: false` for every one of them (platform-gotchas.md 2),
so `shared.models_check` never asks it about them. What the data says, and where the app uses it:

* training: `trainingType` GlobalStandard, always (a job without it fails: platform-gotchas.md 1) - the spec
  (shared/spec.py) defaults it and rejects any other value; supervised only (training-types.md);
* deployment: ARM `properties.model.format` is the provider's string, case-sensitive (`Microsoft`, `Mistral AI`,
  `Meta`, `Alibaba`; `OpenAI-OSS` is the CLI's spelling and an HTTP 500 on ARM), sku GlobalStandard, capacity
  100 by default (capacity 1 gives "Failed to load LoRA": platform-gotchas.md 5, 6) - shared/deploy.py;
* serving: the deployments path of the resource endpoint with api-version `2025-04-01-preview`
  (deployment.md, "Cognitive Services Endpoint") - the smoke test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("open_weight_models.json")
OPENAI_FORMAT = "OpenAI"
"""`model.format` of every model that is not open-weight (Azure OpenAI models and their fine-tunes)."""


@dataclass(frozen=True)
class OpenWeightModel:
    id: str
    provider: str
    arm_format: str
    methods: tuple[str, ...]
    training_type: str
    deployment_sku: str
    min_capacity: int
    inference_api_version: str
    note: str = ""


@dataclass(frozen=True)
class Catalogue:
    source: str
    date: str
    models: tuple[OpenWeightModel, ...]
    cli_format: str

    def find(self, model: str) -> OpenWeightModel | None:
        """The entry for a base model id, or for a fine-tune of one (`<id>.ft-<hex>[-suffix]`, a checkpoint)."""
        name = model.strip().lower()
        for entry in self.models:
            base = entry.id.lower()
            if name == base or name.startswith(base + ".ft-"):
                return entry
        return None


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    doc = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    models = tuple(
        OpenWeightModel(
            id=m["id"],
            provider=m["provider"],
            arm_format=m["arm_format"],
            methods=tuple(m["methods"]),
            training_type=m["training_type"],
            deployment_sku=m["deployment_sku"],
            min_capacity=int(m["min_capacity"]),
            inference_api_version=m["inference_api_version"],
            note=m.get("note", ""),
        )
        for m in doc["models"]
    )
    return Catalogue(source=doc["source"], date=doc["date"], models=models, cli_format=doc["cli_format"])


def find(model: str) -> OpenWeightModel | None:
    return catalogue().find(model)


def deployment_format(model: str) -> str:
    """ARM `properties.model.format` for deploying `model` (a base model, a fine-tuned model or a checkpoint)."""
    entry = find(model)
    return entry.arm_format if entry is not None else OPENAI_FORMAT
