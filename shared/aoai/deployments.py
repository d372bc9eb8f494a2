"""The deployments control plane (ARM ``Microsoft.CognitiveServices/accounts/deployments``).

    with DeploymentsClient(subscription_id=..., resource_group=..., account_name=..., credential=cred) as arm:
        deployment = arm.create_or_update_and_wait("ft-demo", model_name=job.fine_tuned_model, timeout=3600)

PUT and DELETE are long-running: the answer carries ``Azure-AsyncOperation`` (or, for DELETE, ``Location``),
polled with the service's ``Retry-After`` (60 s when absent), capped by ``max_poll_interval`` (set it low
against a local emulator). A synchronous refusal raises at once: ``InsufficientQuotaError`` (ARM
``InsufficientQuota``), ``DeploymentLimitError`` (the cap of fine-tuned deployments per resource), or the
status class. An operation that ends ``Failed``/``Canceled`` raises ``OperationFailedError`` with the
operation's own code and message; a deadline passed raises ``OperationTimeoutError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from azure.core.credentials import TokenCredential
from pydantic import SecretStr

from shared import open_weight

from . import api_versions
from ._base import BaseClient, seg
from .auth import MANAGEMENT_SCOPE, BearerTokenAuth, StaticTokenCredential
from .errors import OperationFailedError, OperationTimeoutError
from .models import PROVISIONING_TERMINAL, AsyncOperation, Deployment
from .redact import scrub_url
from .retry import parse_retry_after

logger = logging.getLogger("shared.aoai")

__all__ = ["DEFAULT_POLL_INTERVAL", "DeploymentPoller", "DeploymentsClient"]

DEFAULT_POLL_INTERVAL = 60.0
DEFAULT_MANAGEMENT_API_VERSION = api_versions.ARM_STABLE


class DeploymentPoller:
    """Follows one long-running PUT or DELETE to its end.

    ``status`` is the last status seen (operation status, or ``provisioningState`` when the service gave no
    operation URL). :meth:`result` waits; :meth:`poll` does one round trip; :meth:`done` says whether it ended.
    """

    def __init__(self, client: DeploymentsClient, name: str, response: httpx.Response, *, deleting: bool) -> None:
        self._client = client
        self.name = name
        self.deleting = deleting
        self.operation_url: str | None = response.headers.get("azure-asyncoperation")
        self.location_url: str | None = response.headers.get("location") if deleting else None
        self._retry_after = parse_retry_after(response.headers)
        self.deployment: Deployment | None = None
        self.status: str | None = None
        self._done = False
        self.polls = 0
        if not deleting and response.content:
            self.deployment = client._parse(Deployment, response)
            self.status = self.deployment.provisioning_state
        if deleting:
            self.status = "Deleting"
            self._done = response.status_code in (200, 204) and not self.operation_url
        elif not self.operation_url and self.status in PROVISIONING_TERMINAL:
            self._done = True
            self._check_deployment()

    def done(self) -> bool:
        return self._done

    def _interval(self) -> float:
        wait = DEFAULT_POLL_INTERVAL if self._retry_after is None else self._retry_after
        return min(wait, self._client.max_poll_interval)

    def _check_deployment(self) -> None:
        state = self.status or ""
        if state in PROVISIONING_TERMINAL and state != "Succeeded":
            raise OperationFailedError(
                status=state, code=None, message="provisioningState is " + state, resource=self.name
            )

    def poll(self) -> None:
        """One round trip; sets ``status`` and ``done()``; raises when the operation failed."""
        c = self._client
        self.polls += 1
        if self.operation_url:
            response = c._send("GET", self.operation_url)
            self._retry_after = parse_retry_after(response.headers)
            op = c._parse(AsyncOperation, response)
            self.status = op.status
            logger.info("deployment %s: operation %s (%s %% done)", self.name, op.status, op.percent_complete)
            if not op.is_terminal:
                return
            if not op.succeeded:
                raise OperationFailedError(
                    status=op.status,
                    code=op.error.code if op.error else None,
                    message=op.error.message if op.error else None,
                    operation_url=self.operation_url,
                    resource=self.name,
                )
            self._done = True
            if not self.deleting:
                self.deployment = c.get(self.name)
            return
        if self.deleting and self.location_url:
            response = c._send("GET", self.location_url, allow=(404,))
            self._retry_after = parse_retry_after(response.headers)
            self._done = response.status_code != 202
            return
        if self.deleting:  # 202 with no URL to follow: watch the resource disappear
            self._done = c.get(self.name) is None
            return
        deployment = c.get(self.name)
        if deployment is None:
            raise OperationFailedError(
                status="Failed", code="NotFound", message="deployment vanished", resource=self.name
            )
        self.deployment = deployment
        self.status = deployment.provisioning_state
        if self.status in PROVISIONING_TERMINAL:
            self._check_deployment()
            self._done = True

    def wait(self, timeout: float | None = None) -> None:
        """Poll until done, sleeping ``Retry-After`` (default 60 s, capped) between polls."""
        c = self._client
        deadline = None if timeout is None else c._clock() + timeout
        while not self._done:
            wait = self._interval()
            if deadline is not None:
                remaining = deadline - c._clock()
                if remaining <= 0:
                    raise OperationTimeoutError(
                        resource=f"deployment {self.name}", last_status=self.status, timeout=timeout or 0.0
                    )
                wait = min(wait, remaining)
            c._sleep(wait)
            self.poll()

    def result(self, timeout: float | None = None) -> Deployment:
        """Wait, then return the deployment as it stands after a successful PUT."""
        self.wait(timeout)
        if self.deployment is None:
            raise OperationFailedError(
                status=self.status or "unknown", code=None, message="no deployment returned", resource=self.name
            )
        return self.deployment


class DeploymentsClient(BaseClient):
    """Deployments of one Azure OpenAI account, through ARM.

    Auth is a bearer token for ``https://management.azure.com/.default``: ``credential`` (azure-identity,
    cached until near expiry) or, for local use, a fixed ``bearer_token``. ``sleep`` and ``clock`` are
    injectable for tests.
    """

    def __init__(
        self,
        management_endpoint: str = "https://management.azure.com",
        *,
        subscription_id: str,
        resource_group: str,
        account_name: str,
        api_version: str = DEFAULT_MANAGEMENT_API_VERSION,
        credential: TokenCredential | None = None,
        bearer_token: SecretStr | str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        max_poll_interval: float = DEFAULT_POLL_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (credential is None) == (bearer_token is None):
            raise ValueError("give exactly one of credential or bearer_token")
        secrets: tuple[str, ...] = ()
        if credential is None:
            assert bearer_token is not None
            token = bearer_token if isinstance(bearer_token, SecretStr) else SecretStr(bearer_token)
            credential = StaticTokenCredential(token)
            secrets = (token.get_secret_value(),)
        self.auth = BearerTokenAuth(credential, MANAGEMENT_SCOPE)
        super().__init__(
            management_endpoint.rstrip("/") + "/",
            auth=self.auth,
            transport=transport,
            timeout=timeout,
            max_retries=max_retries,
            secrets=secrets,
        )
        self.api_version = api_version
        self._version = {"api-version": api_version}
        self.max_poll_interval = max_poll_interval
        self._sleep = sleep
        self._clock = clock
        self.last_date: datetime | None = None
        """The ``Date`` header of the last listing (the service's clock)."""
        self.collection_path = (
            f"subscriptions/{seg(subscription_id)}/resourceGroups/{seg(resource_group)}"
            f"/providers/Microsoft.CognitiveServices/accounts/{seg(account_name)}/deployments"
        )

    def _path(self, name: str) -> str:
        return f"{self.collection_path}/{seg(name)}"

    def get(self, name: str) -> Deployment | None:
        """The deployment, or None when it does not exist."""
        response = self._send("GET", self._path(name), params=self._version, allow=(404,))
        if response.status_code == 404:
            return None
        return self._parse(Deployment, response)

    def list(self) -> Iterator[Deployment]:
        """Every deployment, following ``nextLink``."""
        response = self._send("GET", self.collection_path, params=self._version)
        self.last_date = _http_date(response)
        seen: set[str] = set()
        while True:
            page = self._json(response)
            values: list[Any] = page.get("value") or [] if isinstance(page, dict) else []
            for raw in values:
                yield self._validate(Deployment, raw, response)
            next_link = page.get("nextLink") if isinstance(page, dict) else None
            if not next_link or next_link in seen:
                return
            seen.add(next_link)
            logger.debug("following nextLink %s", scrub_url(next_link))
            response = self._send("GET", next_link)

    def list_with_time(self) -> tuple[tuple[Deployment, ...], datetime]:
        """Every deployment, and the service's own time when it answered (the ``Date`` header of the listing, else
        this machine's clock): ages of deployments (``systemData``) are measured on the service's clock."""
        deployments = tuple(self.list())
        return deployments, self.last_date or datetime.now(UTC)

    def begin_create_or_update(
        self,
        name: str,
        *,
        model_name: str,
        model_version: str = "1",
        sku_name: str = "Standard",
        capacity: int = 1,
        source: str | None = None,
        source_account: str | None = None,
        model_format: str | None = None,
    ) -> DeploymentPoller:
        """PUT the deployment (idempotent: safe to retry and to repeat) and return its poller.

        ``model_name`` is a fine-tuned model (``<base>.ft-<hex>``) or a checkpoint id. For a model trained in
        another account: ``source`` (its ARM id; cross-region or cross-subscription in the how-to) or
        ``source_account`` (sent as ``properties.model.sourceAccount``; the how-to's cross-tenant form).
        A ``DeveloperTier`` sku is sent with api-version 2025-07-01-preview, the version the Developer-tier
        how-to uses; every other sku with the client's ``api_version``. ``model_format`` defaults to the model's
        own: ``OpenAI``, or an open-weight model's provider string (``shared.open_weight``: case-sensitive, a
        wrong one is an HTTP 500 on Azure).
        """
        model_format = model_format or open_weight.deployment_format(model_name)
        model: dict[str, Any] = {"format": model_format, "name": model_name, "version": model_version}
        if source is not None:
            model["source"] = source
        if source_account is not None:
            model["sourceAccount"] = source_account
        body = {"sku": {"name": sku_name, "capacity": capacity}, "properties": {"model": model}}
        version = api_versions.arm_version_for_sku(sku_name, self.api_version)
        response = self._send("PUT", self._path(name), params={"api-version": version}, json=body)
        return DeploymentPoller(self, name, response, deleting=False)

    def create_or_update_and_wait(
        self,
        name: str,
        *,
        model_name: str,
        model_version: str = "1",
        sku_name: str = "Standard",
        capacity: int = 1,
        source: str | None = None,
        source_account: str | None = None,
        model_format: str | None = None,
        timeout: float | None = 3600.0,
    ) -> Deployment:
        poller = self.begin_create_or_update(
            name,
            model_name=model_name,
            model_version=model_version,
            sku_name=sku_name,
            capacity=capacity,
            source=source,
            source_account=source_account,
            model_format=model_format,
        )
        return poller.result(timeout)

    def begin_delete(self, name: str) -> DeploymentPoller | None:
        """DELETE; None when there was nothing to delete (404)."""
        response = self._send("DELETE", self._path(name), params=self._version, allow=(404,))
        if response.status_code == 404:
            return None
        return DeploymentPoller(self, name, response, deleting=True)

    def delete_and_wait(self, name: str, *, timeout: float | None = 3600.0) -> bool:
        """Delete and wait until gone. True when the DELETE was accepted, False when the service answered 404."""
        poller = self.begin_delete(name)
        if poller is None:
            return False
        poller.wait(timeout)
        return True


def _http_date(response: httpx.Response) -> datetime | None:
    value = response.headers.get("date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
