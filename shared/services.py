"""The clients a handler needs, built once per process from the settings.

Handlers call `get_services()`; tests build `Services.from_settings(Settings(...), env=...)` for their own
Azurite and emulator.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from shared.aoai import AzureOpenAIClient, DeploymentsClient
from shared.aoai.redact import scrub_http_client_logs
from shared.connections import StorageConnection
from shared.effects import EffectRunner
from shared.hostconfig import HostConfig
from shared.notifications import Notifier, Outbox, build_notifications
from shared.runstore import RunStore
from shared.settings import Settings, check_configuration, get_settings
from shared.telemetry import service_transport, watch_queues


@dataclass
class Services:
    settings: Settings
    storage: StorageConnection
    blobs: BlobServiceClient
    store: RunStore
    aoai: AzureOpenAIClient
    deployments: DeploymentsClient | None
    notifier: Notifier
    outbox: Outbox
    host: HostConfig
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    effects: EffectRunner = field(init=False)
    _queues: dict[str, QueueClient] = field(default_factory=dict, init=False, repr=False)
    _queues_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.effects = EffectRunner(self.store, self.instance, lease_seconds=self.settings.lease_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> Services:
        """Build every client once. Refuses (ConfigurationError) settings that break a bound with host.json."""
        scrub_http_client_logs()  # request URLs in httpx's log lines lose SAS signatures and passwords
        env = os.environ if env is None else env
        host = HostConfig.load(env=env)
        check_configuration(settings, host)
        storage = StorageConnection.from_settings(settings.storage_connection, env)
        blobs = storage.blob_service_client()
        key = settings.azure_openai_api_key
        aoai = AzureOpenAIClient(
            settings.azure_openai_endpoint,
            surface=settings.data_plane_surface,
            api_version=settings.azure_openai_api_version,
            preview_api_version=settings.azure_openai_preview_api_version or None,
            api_key=key,
            credential=_credential(settings) if key is None else None,
            token_scope=settings.azure_openai_token_scope or None,
            transport=service_transport("azure_openai"),
            upload_part_bytes=settings.azure_openai_upload_part_bytes,
        )
        deployments = None
        if _arm_configured(settings):
            token = settings.azure_management_token
            deployments = DeploymentsClient(
                settings.azure_management_endpoint,
                subscription_id=settings.azure_subscription_id,
                resource_group=settings.azure_resource_group,
                account_name=settings.azure_openai_account_name,
                api_version=settings.azure_management_api_version,
                credential=_credential(settings) if token is None else None,
                bearer_token=token,
                max_poll_interval=settings.lro_max_wait_seconds,
                transport=service_transport("azure_management"),
            )
        notifier, outbox = build_notifications(settings, storage)
        store = RunStore(
            blobs.get_container_client(settings.runs_container),
            on_change=notifier.run_changed,
            track_events=notifier.enabled,
        )
        return cls(settings, storage, blobs, store, aoai, deployments, notifier, outbox, host)

    @property
    def deploy_attempts(self) -> int:
        """How many times the deploy queue delivers a message before poisoning it: host.json's, never a copy."""
        return self.host.max_dequeue_count

    def queue(self, name: str) -> QueueClient:
        """A queue client using the host's message encoding (base64): built and the queue created once."""
        with self._queues_lock:
            client = self._queues.get(name)
            if client is None:
                client = self.storage.queue_client(name)
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
                self._queues[name] = client
            return client

    def queues_written(self) -> list[str]:
        """Every queue the app uses: deploy, submit, events (when set), the webhook outbox and its poison queue."""
        s = self.settings
        outbox = s.webhook_outbox_queue
        names = [s.deploy_queue, s.submit_queue, s.events_queue, outbox, f"{outbox}-poison" if outbox else ""]
        return [n for n in dict.fromkeys(names) if n]

    def ensure_storage(self) -> None:
        """Create the containers and queues the app writes to (idempotent; once per process via get_services)."""
        for name in (self.settings.runs_container, self.settings.staging_container, self.settings.drop_container):
            try:
                self.blobs.create_container(name)
            except ResourceExistsError:
                pass
        for queue in self.queues_written():
            self.queue(queue)


def _arm_configured(settings: Settings) -> bool:
    return bool(settings.azure_subscription_id and settings.azure_resource_group and settings.azure_openai_account_name)


def _credential(settings: Settings) -> TokenCredential:
    """Managed identity (user-assigned when AZURE_CLIENT_ID is set), else the developer's Azure login."""
    return _default_credential(settings.azure_client_id)


@lru_cache(maxsize=1)
def _default_credential(client_id: str) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()


@lru_cache(maxsize=1)
def get_services() -> Services:
    # httpx logs every request URL at INFO: webhook URLs and SAS URLs are secrets, so keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    services = Services.from_settings(get_settings())
    services.ensure_storage()
    s = services.settings
    names = (s.deploy_queue, s.deploy_queue + "-poison", s.webhook_outbox_queue, s.webhook_outbox_queue + "-poison")
    watch_queues({name: services.storage.queue_client(name) for name in names})  # only when telemetry is on
    return services
