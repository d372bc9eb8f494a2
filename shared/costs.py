"""Cost you can see before you pay: a price table shipped as data, an estimate before any upload, the actual.

The table (`shared/prices.json`) has its source and date; `PRICE_TABLE_FILE` names a JSON file of the same
shape merged over it (your agreement's prices). `PRICE_PER_MILLION_TRAINING_TOKENS` still prices every model.

- Estimate (the validation step, before any import): billed tokens of the examples actually trained on (the
  training split when the run holds out a validation split) x the epochs the service will use (the run's
  `n_epochs`, else the service's default rule on that number of examples) x the training price of the run's
  model and training type.
- Guard: `max_training_cost` (profile, metadata or setting) rejects a run whose estimate is above it, or which
  has no price to estimate with, before anything is uploaded. `max_hosting_hours` is recorded with the hosting
  price of the deployment's SKU: the hosting bill per hour and for those hours.
- Actual: `trained_tokens` of the job x the same price, once the job succeeded.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

TABLE = Path(__file__).with_name("prices.json")


class PriceTable(BaseModel):
    source: str
    date: str
    currency: str = "USD"
    hosting_per_hour: dict[str, float] = {}
    training_per_million_tokens: dict[str, dict[str, float]] = {}

    def training_price(self, model: str, training_type: str | None) -> float | None:
        prices = self.training_per_million_tokens.get(model, {})
        wanted = (training_type or "Standard").lower()
        return next((v for k, v in prices.items() if k.lower() == wanted), None)

    def hosting_price(self, sku: str) -> float | None:
        return next((v for k, v in self.hosting_per_hour.items() if k.lower() == sku.lower()), None)


class CostEstimate(BaseModel):
    """What the run is expected to cost, and (once trained) what it did."""

    currency: str
    price_source: str
    trained_examples: int
    n_epochs: int
    billed_tokens: int
    price_per_million_tokens: float | None
    estimated_training: float | None
    hosting_per_hour: float | None = None
    max_hosting_hours: float | None = None
    estimated_hosting: float | None = None
    actual_training: float | None = None
    actual_trained_tokens: int | None = None


@lru_cache(maxsize=8)
def _load(extra: str) -> PriceTable:
    doc: dict[str, Any] = json.loads(TABLE.read_text("utf-8"))
    if extra:
        override = json.loads(Path(extra).read_text("utf-8"))
        for key in ("hosting_per_hour",):
            doc[key] = {**doc.get(key, {}), **override.get(key, {})}
        models = dict(doc.get("training_per_million_tokens", {}))
        for model, prices in override.get("training_per_million_tokens", {}).items():
            models[model] = {**models.get(model, {}), **prices}
        doc["training_per_million_tokens"] = models
        for key in ("source", "date", "currency"):
            if key in override:
                doc[key] = override[key]
    return PriceTable.model_validate(doc)


def price_table(price_table_file: str = "") -> PriceTable:
    return _load(price_table_file)


def estimate(
    table: PriceTable,
    *,
    model: str,
    training_type: str | None,
    examples: int,
    trained_examples: int,
    billed_per_epoch: int,
    n_epochs: int | None,
    flat_price: float | None = None,
    sku: str | None = None,
    max_hosting_hours: float | None = None,
) -> CostEstimate:
    """`billed_per_epoch` is for all `examples` of the file; the run trains on `trained_examples` of them."""
    from shared.validation.statistics import default_epochs  # the service's epochs rule (numpy-free, but lazy)

    epochs = n_epochs if n_epochs is not None else default_epochs(trained_examples)
    share = trained_examples / examples if examples else 1.0
    billed = round(billed_per_epoch * share) * epochs
    price = flat_price if flat_price is not None else table.training_price(model, training_type)
    hourly = table.hosting_price(sku) if sku else None
    return CostEstimate(
        currency=table.currency,
        price_source=f"{'PRICE_PER_MILLION_TRAINING_TOKENS' if flat_price is not None else table.source} "
                     f"({table.date})",
        trained_examples=trained_examples,
        n_epochs=epochs,
        billed_tokens=billed,
        price_per_million_tokens=price,
        estimated_training=None if price is None else round(billed / 1_000_000 * price, 4),
        hosting_per_hour=hourly,
        max_hosting_hours=max_hosting_hours,
        estimated_hosting=None if hourly is None or max_hosting_hours is None else round(hourly * max_hosting_hours,
                                                                                           2),
    )


def over_budget(cost: CostEstimate, max_training_cost: float | None) -> str | None:
    """Why the run must not start for `max_training_cost`, or None."""
    if max_training_cost is None:
        return None
    if cost.estimated_training is None:
        return (f"max_training_cost is {max_training_cost} but there is no training price for this model and "
                "training type in the price table: add it (PRICE_TABLE_FILE) or drop the limit")
    if cost.estimated_training > max_training_cost:
        return (f"the estimated training cost is {cost.estimated_training:.2f} {cost.currency} "
                f"({cost.billed_tokens} billed tokens = {cost.trained_examples} examples x {cost.n_epochs} epochs at "
                f"{cost.price_per_million_tokens} per 1M tokens), above max_training_cost {max_training_cost}")
    return None


def actual(cost: CostEstimate, trained_tokens: int | None) -> None:
    if trained_tokens is None:
        return
    cost.actual_trained_tokens = trained_tokens
    if cost.price_per_million_tokens is not None:
        cost.actual_training = round(trained_tokens / 1_000_000 * cost.price_per_million_tokens, 4)


def in_window(created: datetime, since: datetime | None) -> bool:
    return since is None or created >= since
