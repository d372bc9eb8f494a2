"""A small hand-written client for the Azure OpenAI data plane (files, fine-tuning jobs, models, inference).

    with AzureOpenAIClient("https://my-resource.openai.azure.com", api_key=key) as aoai:
        f = aoai.files.import_from_url("train.jsonl", sas_url)
        job = aoai.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=f.id, training_type="Standard")
        for event in aoai.jobs.events(job.id, newer_than=last_seen_event_id):
            ...

Two surfaces (``surface=``): ``versioned`` (``/openai/...?api-version=``, the default) and ``v1``
(``/openai/v1/...``, no api-version; the only surface of a Foundry project endpoint). On v1 there is no files
import: content is uploaded (``files.upload_source``: ``POST /files``, or the Uploads API in parts), and jobs
carry ``metadata``.

Every call raises :mod:`shared.aoai.errors`; retries happen in :class:`shared.aoai.retry.RetryTransport`.
Creates (``files.upload``, ``files.import_from_url``, ``jobs.create``) are marked non-idempotent: when their
outcome is unknown the error has ``ambiguous=True`` and the caller reconciles by listing (see docs/client.md).
The deployments control plane lives in :mod:`shared.aoai.deployments` (re-exported here).
"""

from __future__ import annotations

import builtins
import io
import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import IO, Any

import httpx
from azure.core.credentials import TokenCredential
from pydantic import SecretStr

from . import api_versions
from ._base import BaseClient, seg
from .api_versions import V1, Feature, Surface, UnsupportedFeatureError
from .auth import ApiKeyAuth, BearerTokenAuth
from .deployments import DeploymentPoller, DeploymentsClient
from .endpoints import DataPlaneEndpoint
from .errors import error_from_exception
from .models import ChatCompletion, Checkpoint, Completion, DeletedFile, FileObject, FineTuningJob, JobEvent, Model
from .uploads import DEFAULT_PART_BYTES, ByteSource, Uploads

__all__ = ["AzureOpenAIClient", "DeploymentPoller", "DeploymentsClient", "Files", "Jobs", "Models"]

DEFAULT_API_VERSION = api_versions.GA
DEFAULT_PREVIEW_API_VERSION = api_versions.PREVIEW
_SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_INT32 = (-(2**31), 2**31 - 1)


class Files:
    """``/openai/files``: training and validation data, and results files."""

    def __init__(self, client: AzureOpenAIClient) -> None:
        self._c = client

    def import_from_url(self, filename: str, content_url: str, purpose: str = "fine-tune") -> FileObject:
        """``POST /files/import``: the service fetches ``content_url`` (a SAS URL) itself. Answers ``pending``.

        Non-idempotent: an ambiguous failure must be reconciled with :meth:`find_by_filename`.
        """
        body = {"purpose": purpose, "filename": filename, "content_url": content_url}
        params = self._c._params_for([Feature.FILE_IMPORT, *api_versions.purpose_features(purpose)])
        response = self._c._send("POST", "files/import", params=params, json=body, idempotent=False)
        return self._c._parse(FileObject, response)

    def upload(self, filename: str, data: bytes | IO[bytes] | io.RawIOBase, purpose: str = "fine-tune") -> FileObject:
        """``POST /files`` multipart. Non-idempotent (see :meth:`import_from_url`)."""
        response = self._c._send(
            "POST",
            "files",
            params=self._c._params_for(api_versions.purpose_features(purpose)),
            data={"purpose": purpose},
            files={"file": (filename, data, "application/octet-stream")},
            idempotent=False,
        )
        return self._c._parse(FileObject, response)

    def upload_source(self, filename: str, source: ByteSource, purpose: str = "fine-tune") -> FileObject:
        """Upload ``source`` without holding it in memory: one ``POST /files`` when it fits in one part
        (``upload_part_bytes``), else the Uploads API (create, one part per range, complete).

        Non-idempotent as a whole: on ``ambiguous=True`` reconcile with :meth:`find_by_filename`.
        """
        if source.size <= self._c.upload_part_bytes:
            return self.upload(filename, source.reader(0, source.size), purpose=purpose)
        return self._c.uploads.upload_in_parts(filename, source, purpose=purpose)

    def get(self, file_id: str) -> FileObject:
        return self._c._parse(FileObject, self._c._send("GET", f"files/{seg(file_id)}", params=self._c._version))

    def list(self, purpose: str | None = None) -> Iterator[FileObject]:
        """Every file (of ``purpose`` when given), following ``has_more`` where the api-version paginates."""
        return self._c._paginate("files", FileObject, {**self._c._version, "purpose": purpose})

    def find_by_filename(self, filename: str, purpose: str | None = "fine-tune") -> builtins.list[FileObject]:
        """Files named ``filename``, newest first: how a caller reconciles an ambiguous upload/import."""
        found = [f for f in self.list(purpose=purpose) if f.filename == filename]
        return sorted(found, key=lambda f: f.created_at or 0, reverse=True)

    def delete(self, file_id: str) -> DeletedFile:
        response = self._c._send("DELETE", f"files/{seg(file_id)}", params=self._c._version)
        if response.status_code == 204 or not response.content:
            return DeletedFile(id=file_id)
        return self._c._parse(DeletedFile, response)

    def content(self, file_id: str) -> bytes:
        """The whole content (use :meth:`stream_content` for large files)."""
        return self._c._send("GET", f"files/{seg(file_id)}/content", params=self._c._version).content

    def stream_content(self, file_id: str, chunk_size: int = 1 << 16) -> Generator[bytes, None, None]:
        """Yield the content in chunks without holding it in memory.

        The request is sent on the first ``next()``; wrap in ``contextlib.closing`` to stop early.
        """
        response = self._c._send("GET", f"files/{seg(file_id)}/content", params=self._c._version, stream=True)
        try:
            yield from response.iter_bytes(chunk_size)
        except httpx.RequestError as exc:
            raise error_from_exception(exc, response.request) from exc
        finally:
            response.close()


class Jobs:
    """``/openai/fine_tuning/jobs``."""

    def __init__(self, client: AzureOpenAIClient) -> None:
        self._c = client

    def create(
        self,
        *,
        model: str,
        training_file: str,
        validation_file: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        method: Mapping[str, Any] | None = None,
        training_type: str | None = None,
        integrations: Sequence[Mapping[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> FineTuningJob:
        """``POST /fine_tuning/jobs``. ``training_type`` is sent as Azure's top-level ``trainingType``
        (``Standard``, ``GlobalStandard``, ``Developer``); ``metadata`` (v1 only: up to 16 pairs, keys of at
        most 64 and values of at most 512 characters) tags the job; ``extra`` is merged into the body last.

        The api-version is chosen per request (:mod:`shared.aoai.api_versions`): ``trainingType``, a ``method``
        other than supervised and ``integrations`` exist only in the preview, so such a create is sent with
        ``preview_api_version``; without one it raises ``UnsupportedFeatureError`` before sending anything.
        DPO hyperparameters go where the preview spec puts them: ``method.dpo.hyperparameters.beta``.

        Non-idempotent: on ``ambiguous=True`` reconcile with :meth:`find_matching` before creating again.
        """
        if suffix is not None and not _SUFFIX_RE.match(suffix):
            raise ValueError(f"suffix must be 1-40 characters of a-z A-Z 0-9 - _, got {suffix!r}")
        if seed is not None and not _INT32[0] <= seed <= _INT32[1]:
            raise ValueError(f"seed must be an int32, got {seed}")
        if metadata is not None:
            _check_metadata(metadata)
        version, method_out, hyper_out = self._plan_create(
            method, hyperparameters, training_type, integrations, metadata
        )
        body: dict[str, Any] = {"model": model, "training_file": training_file}
        optional: dict[str, Any] = {
            "validation_file": validation_file,
            "hyperparameters": hyper_out,
            "suffix": suffix,
            "seed": seed,
            "method": method_out,
            "integrations": [dict(i) for i in integrations] if integrations is not None else None,
            "trainingType": training_type,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        body.update(extra or {})
        response = self._c._send(
            "POST", "fine_tuning/jobs", params=self._c._params(version), json=body, idempotent=False
        )
        return self._c._parse(FineTuningJob, response)

    def api_version_for_create(
        self,
        *,
        method: Mapping[str, Any] | None = None,
        training_type: str | None = None,
        integrations: Sequence[Mapping[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """The api-version :meth:`create` would use (``v1`` on the v1 surface); raises ``UnsupportedFeatureError``
        before any upload."""
        return self._plan_create(method, None, training_type, integrations, metadata)[0]

    def _plan_create(
        self,
        method: Mapping[str, Any] | None,
        hyperparameters: Mapping[str, Any] | None,
        training_type: str | None,
        integrations: Sequence[Mapping[str, Any]] | None,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
        """(api-version, method to send, top-level hyperparameters to send).

        A supervised ``method`` is preview-only as a field, but means the same as top-level ``hyperparameters``:
        on GA it is sent that way; any other method type (dpo) needs the preview api-version.
        """
        features: list[Feature] = []
        if training_type is not None:
            features.append(Feature.TRAINING_TYPE)
        if integrations is not None:
            features.append(Feature.INTEGRATIONS)
        if metadata is not None:
            features.append(Feature.METADATA)
        method_type = (method or {}).get("type")
        if method is not None and method_type != "supervised":
            features.append(Feature.METHOD)
        version = self._c._choose(features)
        hyper = dict(hyperparameters) if hyperparameters is not None else None
        if method is None:
            return version, None, hyper
        if method_type == "supervised" and not api_versions.supports(version, Feature.METHOD):
            inner = (method.get("supervised") or {}).get("hyperparameters") or {}
            merged = {**(hyper or {}), **dict(inner)}
            return version, None, merged or None
        return version, dict(method), hyper

    def get(self, job_id: str) -> FineTuningJob:
        response = self._c._send("GET", f"fine_tuning/jobs/{seg(job_id)}", params=self._c._version)
        return self._c._parse(FineTuningJob, response)

    def list(self, limit: int | None = None) -> Iterator[FineTuningJob]:
        """Every job, newest first, asking ``limit`` per page (service default 20)."""
        return self._c._paginate("fine_tuning/jobs", FineTuningJob, {**self._c._version, "limit": limit})

    def find_matching(
        self, *, model: str, training_file: str, suffix: str | None = None, validation_file: str | None = None
    ) -> builtins.list[FineTuningJob]:
        """Jobs with the same model, files and suffix (newest first): how a caller reconciles an ambiguous create.

        A fine-tuned model name starts with the base model; the job's ``model`` may be either.
        """
        return [
            job
            for job in self.list(limit=100)
            if job.training_file == training_file
            and (validation_file is None or job.validation_file == validation_file)
            and job.suffix == suffix
            and job.model is not None
            and (job.model == model or model.startswith(job.model) or job.model.startswith(model))
        ]

    def find_by_metadata(self, key: str, value: str) -> builtins.list[FineTuningJob]:
        """Jobs whose ``metadata[key]`` is exactly ``value``, oldest first (v1: how a job create is reconciled).

        Lists every job (pages of 100) and compares here: the v1 spec's list takes ``after`` and ``limit`` only.
        """
        found = [job for job in self.list(limit=100) if (job.metadata or {}).get(key) == value]
        return sorted(found, key=lambda j: j.created_at or 0)

    def cancel(self, job_id: str) -> FineTuningJob:
        """``POST .../cancel``: cancelling twice is harmless, so this is retried like a read."""
        response = self._c._send(
            "POST", f"fine_tuning/jobs/{seg(job_id)}/cancel", params=self._c._version, idempotent=True
        )
        return self._c._parse(FineTuningJob, response)

    def pause(self, job_id: str) -> FineTuningJob:
        """Preview api-versions only (sent with ``preview_api_version`` when the configured one is GA)."""
        response = self._c._send(
            "POST", f"fine_tuning/jobs/{seg(job_id)}/pause", params=self._pause_version(), idempotent=True
        )
        return self._c._parse(FineTuningJob, response)

    def resume(self, job_id: str) -> FineTuningJob:
        """Preview api-versions only (as :meth:`pause`)."""
        response = self._c._send(
            "POST", f"fine_tuning/jobs/{seg(job_id)}/resume", params=self._pause_version(), idempotent=True
        )
        return self._c._parse(FineTuningJob, response)

    def _pause_version(self) -> dict[str, str]:
        return self._c._params_for([Feature.PAUSE_RESUME])

    def delete(self, job_id: str) -> None:
        self._c._send("DELETE", f"fine_tuning/jobs/{seg(job_id)}", params=self._c._version)

    def events(self, job_id: str, *, limit: int | None = None, newer_than: str | None = None) -> Iterator[JobEvent]:
        """Events newest first, across all pages.

        With ``newer_than=<event id>`` iteration stops at that event (not yielded) without fetching further
        pages: a poller passes the newest id it has seen and gets only what is new. If that event is not
        found (e.g. it was never listed), every event is yielded.
        """
        pages = self._c._paginate(
            f"fine_tuning/jobs/{seg(job_id)}/events", JobEvent, {**self._c._version, "limit": limit}
        )
        for event in pages:
            if newer_than is not None and event.id == newer_than:
                return
            yield event

    def checkpoints(self, job_id: str, *, limit: int | None = None) -> Iterator[Checkpoint]:
        return self._c._paginate(
            f"fine_tuning/jobs/{seg(job_id)}/checkpoints", Checkpoint, {**self._c._version, "limit": limit}
        )


def _check_metadata(metadata: Mapping[str, str]) -> None:
    """The v1 spec's rule for ``metadata``: at most 16 pairs; string keys up to 64, string values up to 512."""
    if len(metadata) > 16:
        raise ValueError(f"metadata holds at most 16 pairs, got {len(metadata)}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str) or not 1 <= len(key) <= 64 or len(value) > 512:
            raise ValueError(f"metadata keys are 1-64 characters and values at most 512 (strings): {key!r}")


class Models:
    """``/openai/models``: base models (check ``capabilities.fine_tune`` before creating a job) and fine-tunes."""

    def __init__(self, client: AzureOpenAIClient) -> None:
        self._c = client

    def list(self) -> Iterator[Model]:
        return self._c._paginate("models", Model, self._c._version)

    def get(self, model_id: str) -> Model:
        return self._c._parse(Model, self._c._send("GET", f"models/{seg(model_id)}", params=self._c._version))


class AzureOpenAIClient(BaseClient):
    """The data plane of one Azure OpenAI resource.

    Auth: exactly one of ``api_key`` (sent as ``api-key``) or ``credential`` (an azure-identity
    ``TokenCredential``; tokens for ``https://cognitiveservices.azure.com/.default``, cached until near expiry).
    ``endpoint`` is the resource URL (``https://NAME.openai.azure.com``; a trailing ``/openai`` is accepted).
    ``api_version`` is used for every request; ``preview_api_version`` (None to forbid) only for requests that
    need a preview-only field (see :mod:`shared.aoai.api_versions`).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        surface: Surface = "versioned",
        api_version: str = DEFAULT_API_VERSION,
        preview_api_version: str | None = DEFAULT_PREVIEW_API_VERSION,
        api_key: SecretStr | str | None = None,
        credential: TokenCredential | None = None,
        token_scope: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        upload_part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        if (api_key is None) == (credential is None):
            raise ValueError("give exactly one of api_key or credential")
        if upload_part_bytes < 1:
            raise ValueError(f"upload_part_bytes must be positive, got {upload_part_bytes}")
        self.endpoint = DataPlaneEndpoint.parse(endpoint, surface)
        auth: httpx.Auth
        secrets: tuple[str, ...] = ()
        if api_key is not None:
            key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
            auth = ApiKeyAuth(key, as_bearer=self.endpoint.project is not None)
            secrets = (key.get_secret_value(),)
        else:
            assert credential is not None
            auth = BearerTokenAuth(credential, token_scope or self.endpoint.default_scope)
        self.auth = auth
        super().__init__(
            self.endpoint.base_url,
            auth=auth,
            transport=transport,
            timeout=timeout,
            max_retries=max_retries,
            secrets=secrets,
        )
        self.surface: Surface = surface
        self.api_version = api_version
        self.preview_api_version = preview_api_version or None
        self.upload_part_bytes = upload_part_bytes
        self._version: dict[str, str] = {} if surface == V1 else {"api-version": api_version}
        self.files = Files(self)
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.uploads = Uploads(self)

    # -- which api-version a request goes with -----------------------------------------------------------
    def _choose(self, features: Sequence[Feature]) -> str:
        """``v1`` on the v1 surface (which has every feature but the files import), else the dated version
        :func:`shared.aoai.api_versions.choose` picks. Raises ``UnsupportedFeatureError`` before sending."""
        if self.surface == V1:
            missing = [f for f in features if not api_versions.supports(V1, f)]
            if missing:
                raise UnsupportedFeatureError(missing, V1)
            return V1
        return api_versions.choose(features, api_version=self.api_version, preview_api_version=self.preview_api_version)

    @staticmethod
    def _params(version: str) -> dict[str, str]:
        """The query of a request sent with ``version``: nothing on v1 (the surface needs no api-version)."""
        return {} if version == V1 else {"api-version": version}

    def _params_for(self, features: Sequence[Feature]) -> dict[str, str]:
        return self._params(self._choose(features))

    def chat_completions(
        self,
        deployment: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        extra: Mapping[str, Any] | None = None,
        api_version: str | None = None,
    ) -> ChatCompletion:
        """``POST /deployments/{deployment}/chat/completions``. Retried like a read: it changes no state.

        ``api_version`` overrides the client's for this call (open-weight fine-tunes are served with the
        preview version: ``shared.open_weight``)."""
        body: dict[str, Any] = {"messages": [dict(m) for m in messages]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        body.update(extra or {})
        response = self._send(
            "POST",
            self._inference_path(deployment, "chat/completions", body),
            params={"api-version": api_version} if api_version and self.surface != V1 else self._version,
            json=body,
            idempotent=True,
        )
        return self._parse(ChatCompletion, response)

    def completions(
        self,
        deployment: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion:
        """``POST /deployments/{deployment}/completions`` (babbage-002 / davinci-002 fine-tunes)."""
        body: dict[str, Any] = {"prompt": prompt}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        body.update(extra or {})
        response = self._send(
            "POST",
            self._inference_path(deployment, "completions", body),
            params=self._version,
            json=body,
            idempotent=True,
        )
        return self._parse(Completion, response)

    def _inference_path(self, deployment: str, operation: str, body: dict[str, Any]) -> str:
        """Versioned: ``deployments/{name}/{operation}``; v1: ``{operation}`` with ``model`` = the deployment."""
        if self.surface == V1:
            body.setdefault("model", deployment)
            return operation
        return f"deployments/{seg(deployment)}/{operation}"
