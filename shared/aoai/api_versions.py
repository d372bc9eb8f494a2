"""Which api-version each request needs: one table for the client, the spec check and the emulator.

Data plane (``/openai/...?api-version=``):

* ``2024-10-21`` (GA) - the create body is ``model, training_file, validation_file, hyperparameters, suffix,
  seed`` and nothing else (``FineTuningJobCreation`` in ``stable/2024-10-21/azureopenai.json``);
* ``2025-04-01-preview`` - adds ``method`` (``supervised`` | ``dpo``, DPO hyperparameters under
  ``method.dpo.hyperparameters``), ``integrations``, pause/resume; the how-to sends Azure's extra top-level
  ``trainingType`` with this version;
* ``2023-05-15`` - the old GA, still answered (results.csv in the legacy columns).

The v1 surface (``/openai/v1/...``, no ``api-version``; spec ``specification/ai/data-plane/OpenAI.v1/``) is a
*surface*, not a version: it defines every field above and ``metadata`` on jobs, has no files import (content
is uploaded: ``POST /files`` or the Uploads API) and is the only surface of a Foundry project endpoint.

A request that needs a field its api-version lacks is sent with the preview version when the caller has one,
else refused *before sending* (:class:`UnsupportedFeatureError`): the client never sends a field on an
api-version that does not define it. Sources for every row: docs/azure-openai-contract.md.

Control plane (ARM ``Microsoft.CognitiveServices``): ``2025-09-01`` is the newest stable version and the default
of azure-mgmt-cognitiveservices 14.x; the Developer tier (sku ``DeveloperTier``) is documented with
``2025-07-01-preview``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

__all__ = [
    "ARM_DEVELOPER_TIER",
    "ARM_STABLE",
    "ARM_VERSIONS",
    "DATA_PLANE_VERSIONS",
    "DEVELOPER_TIER_SKUS",
    "GA",
    "LEGACY",
    "SURFACE_SETTING",
    "SURFACES",
    "V1",
    "PREVIEW",
    "PREVIEW_SETTING",
    "GA_FILE_PURPOSES",
    "Feature",
    "Surface",
    "UnsupportedFeatureError",
    "arm_version_for_sku",
    "choose",
    "is_preview",
    "purpose_features",
    "supports",
]

GA = "2024-10-21"
PREVIEW = "2025-04-01-preview"
LEGACY = "2023-05-15"
DATA_PLANE_VERSIONS = (GA, PREVIEW, LEGACY)
"""The data-plane versions this client and the emulator are tested with."""

ARM_STABLE = "2025-09-01"
ARM_DEVELOPER_TIER = "2025-07-01-preview"
ARM_VERSIONS = ("2025-09-01", "2025-07-01-preview", "2025-06-01", "2024-10-01", "2023-05-01")
DEVELOPER_TIER_SKUS = frozenset({"developertier"})

PREVIEW_SETTING = "AZURE_OPENAI_PREVIEW_API_VERSION"
"""The app setting that names the preview api-version the app may use for preview-only fields."""

Surface = Literal["versioned", "v1"]
"""``versioned``: ``/openai/...?api-version=``; ``v1``: ``/openai/v1/...`` without one."""
V1: Surface = "v1"
SURFACES: tuple[Surface, ...] = ("versioned", "v1")
SURFACE_SETTING = "AZURE_OPENAI_API_SURFACE"
"""The app setting that chooses the data-plane surface."""


class Feature(StrEnum):
    """Request features that only some api-versions define."""

    TRAINING_TYPE = "trainingType"
    """Azure's top-level ``trainingType`` on a job create (Standard, GlobalStandard, Developer)."""
    METHOD = "method"
    """``method`` on a job create (any type; supervised jobs at GA send top-level ``hyperparameters``)."""
    INTEGRATIONS = "integrations"
    PAUSE_RESUME = "pause/resume"
    FILE_PURPOSE = "file purpose"
    """A file purpose the GA upload enum lacks (e.g. ``evals``, for the preview's Evaluations API)."""
    METADATA = "metadata"
    """``metadata`` (16 string pairs) on a job create: the v1 surface only."""
    FILE_IMPORT = "files import"
    """``POST /files/import`` (the service fetches a URL): the versioned surface only."""
    UPLOADS = "uploads"
    """The Uploads API (create, parts, complete): used on the v1 surface only."""


GA_FILE_PURPOSES = frozenset({"fine-tune", "fine-tune-results", "assistants", "assistants_output", "batch"})
"""The GA spec's upload purposes (``Files_Upload`` ``purpose`` enum, stable/2024-10-21)."""


def purpose_features(purpose: str) -> list[Feature]:
    """What a file upload/import of ``purpose`` needs beyond GA."""
    return [] if purpose in GA_FILE_PURPOSES else [Feature.FILE_PURPOSE]


_PREVIEW_ONLY = frozenset(
    {Feature.TRAINING_TYPE, Feature.METHOD, Feature.INTEGRATIONS, Feature.PAUSE_RESUME, Feature.FILE_PURPOSE}
)
V1_ONLY = frozenset({Feature.METADATA, Feature.UPLOADS})
"""Features no dated api-version has: asking for them on the versioned surface names AZURE_OPENAI_API_SURFACE."""
VERSIONED_ONLY = frozenset({Feature.FILE_IMPORT})


def is_preview(version: str) -> bool:
    return version.endswith("-preview") or version == "preview"


def supports(version: str, feature: Feature) -> bool:
    """Whether ``version`` defines ``feature`` (``v1``: the v1 surface; dated versions: preview-only fields only
    in a preview; the v1-only features in none of them)."""
    if version == V1:
        return feature not in VERSIONED_ONLY
    if feature in V1_ONLY:
        return False
    if feature not in _PREVIEW_ONLY:
        return True
    return is_preview(version)


class UnsupportedFeatureError(ValueError):
    """The request needs a field that the configured api-version lacks, and no preview version was given.

    Raised before anything is sent. ``features`` lists what was asked for; ``api_version`` what was configured.
    """

    def __init__(self, features: Iterable[Feature], api_version: str) -> None:
        self.features = tuple(features)
        self.api_version = api_version
        names = ", ".join(f.value for f in self.features)
        verb = "is" if len(self.features) == 1 else "are"
        if api_version == V1:
            message = (
                f"{names} {verb} not part of the v1 surface (specification/ai/data-plane/OpenAI.v1 has no files "
                "import): upload the content instead, or set "
                f"{SURFACE_SETTING}=versioned"
            )
        elif any(f in V1_ONLY for f in self.features):
            message = (
                f"{names} {verb} not part of any dated api-version ({api_version} included): set "
                f"{SURFACE_SETTING}=v1 to use the v1 surface, or remove the setting that asks for it"
            )
        else:
            message = (
                f"{names} {verb} not part of api-version {api_version} (the GA create body has model, "
                f"training_file, validation_file, hyperparameters, suffix and seed only): set {PREVIEW_SETTING} "
                f"(e.g. {PREVIEW}) so the app sends such jobs with a preview api-version, or remove the setting "
                "that asks for it"
            )
        super().__init__(message)


def choose(features: Iterable[Feature], *, api_version: str, preview_api_version: str | None) -> str:
    """The api-version for a request needing ``features``: ``api_version`` when it has them all, else the preview.

    Raises :class:`UnsupportedFeatureError` when neither does.
    """
    needed = [f for f in features if not supports(api_version, f)]
    if not needed:
        return api_version
    if preview_api_version and all(supports(preview_api_version, f) for f in needed):
        return preview_api_version
    raise UnsupportedFeatureError(needed, api_version)


def arm_version_for_sku(sku_name: str, api_version: str) -> str:
    """The ARM api-version for a deployment of ``sku_name`` (the Developer tier is documented with the preview)."""
    if sku_name.lower() in DEVELOPER_TIER_SKUS:
        return ARM_DEVELOPER_TIER
    return api_version
