"""Where the data plane lives: a resource endpoint or a Foundry project endpoint, on one of two surfaces.

* resource: ``https://<resource>.openai.azure.com`` (or ``.cognitiveservices.azure.com``, ``.services.ai.azure.com``):
  ``/openai/...?api-version=`` (versioned) or ``/openai/v1/...`` (v1);
* Foundry project: ``https://<resource>.services.ai.azure.com/api/projects/<project>``: ``/openai/v1/...`` only.

Entra ID tokens: ``https://cognitiveservices.azure.com/.default`` for a resource endpoint (the versioned
specs' and the v1 spec's OAuth2 scope), ``https://ai.azure.com/.default`` for a project endpoint (the Foundry
quickstart's ``az account get-access-token --scope https://ai.azure.com/.default``; the v1 reference lists it
too). Sources: docs/azure-openai-contract.md, "The v1 surface".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .api_versions import SURFACE_SETTING, V1, Surface
from .auth import AI_FOUNDRY_SCOPE, COGNITIVE_SERVICES_SCOPE

__all__ = ["DataPlaneEndpoint", "is_project_endpoint"]

_PROJECT_RE = re.compile(r"^(?P<root>https?://[^/]+/api/projects/(?P<project>[^/?#]+))(?:/openai(?:/v1)?)?/?$")


def is_project_endpoint(endpoint: str) -> bool:
    """``https://<resource>.services.ai.azure.com/api/projects/<project>`` (optionally with ``/openai/v1``)."""
    return _PROJECT_RE.match(endpoint.strip()) is not None


@dataclass(frozen=True)
class DataPlaneEndpoint:
    """The base URL every data-plane path is relative to, and the token scope that goes with it."""

    root: str
    """The endpoint without any ``/openai`` suffix."""
    surface: Surface
    project: str | None = None

    @classmethod
    def parse(cls, endpoint: str, surface: Surface) -> DataPlaneEndpoint:
        """``endpoint`` with or without a trailing ``/openai`` or ``/openai/v1``. A project endpoint must be v1."""
        text = endpoint.strip().rstrip("/")
        match = _PROJECT_RE.match(text)
        if match is not None:
            if surface != V1:
                raise ValueError(
                    f"{text} is a Foundry project endpoint, which serves the v1 surface only "
                    f"(/openai/v1/...): set {SURFACE_SETTING}=v1"
                )
            return cls(root=match["root"], surface=surface, project=match["project"])
        for suffix in ("/openai/v1", "/openai"):
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
        return cls(root=text, surface=surface)

    @property
    def base_url(self) -> str:
        return f"{self.root}/openai/v1/" if self.surface == V1 else f"{self.root}/openai/"

    @property
    def default_scope(self) -> str:
        return AI_FOUNDRY_SCOPE if self.project is not None else COGNITIVE_SERVICES_SCOPE
