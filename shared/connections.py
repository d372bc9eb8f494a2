"""Storage connections read the way the Azure Functions host reads them.

A binding's ``connection="X"`` names a setting, not a secret. The host resolves it from app settings
(environment variables) in this order, and so does :meth:`StorageConnection.from_settings`:

1. ``AzureWebJobsX`` then ``X`` holding a connection string: an account key string, a SAS string,
   ``UseDevelopmentStorage=true`` (Azurite on its default ports) or Azurite's explicit form with
   ``BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;...``.
2. Identity-based: ``X__accountName``, or ``X__blobServiceUri`` / ``X__queueServiceUri`` /
   ``X__tableServiceUri`` (``X__serviceUri`` is accepted for blob, as the blob binding does), with optional
   ``X__credential=managedidentity`` and ``X__clientId``. ``:`` is accepted in place of ``__``.
   Identity connections carry no key: the clients get an ``azure.identity`` credential.

An empty name means ``AzureWebJobsStorage``. Errors are :class:`ConnectionSettingError`, whose message names
the setting that is missing or malformed and never repeats a key or signature.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient

__all__ = [
    "DEVSTORE_ACCOUNT_KEY",
    "DEVSTORE_ACCOUNT_NAME",
    "ConnectionSettingError",
    "StorageConnection",
    "azurite_connection_string",
]

DEVSTORE_ACCOUNT_NAME = "devstoreaccount1"
# The well-known, published Azurite/Storage Emulator key: not a secret.
DEVSTORE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_DEVSTORE_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
_SERVICES = ("blob", "queue", "table")

MessageEncoding = Literal["base64", "none"]


class ConnectionSettingError(ValueError):
    """A storage connection setting is missing or malformed. The message names the setting, never its secret."""


def azurite_connection_string(
    blob_port: int = 10000, queue_port: int = 10001, table_port: int = 10002, host: str = "127.0.0.1"
) -> str:
    """Azurite's explicit connection string (what ``UseDevelopmentStorage=true`` means, with chosen ports)."""
    base = f"http://{host}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEVSTORE_ACCOUNT_NAME};AccountKey={DEVSTORE_ACCOUNT_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{DEVSTORE_ACCOUNT_NAME};"
        f"QueueEndpoint={base}:{queue_port}/{DEVSTORE_ACCOUNT_NAME};"
        f"TableEndpoint={base}:{table_port}/{DEVSTORE_ACCOUNT_NAME};"
    )


@dataclass(frozen=True)
class StorageConnection:
    """One resolved storage account connection: endpoints plus either a key, a SAS, or an identity."""

    setting: str
    account_name: str | None
    blob_endpoint: str | None
    queue_endpoint: str | None
    table_endpoint: str | None
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    credential_kind: Literal["key", "sas", "managedidentity", "default"] = "key"
    client_id: str | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_settings(
        cls, name: str = "AzureWebJobsStorage", env: Mapping[str, str] | None = None
    ) -> StorageConnection:
        """Resolve the connection named ``name`` from ``env`` (default ``os.environ``) like the Functions host."""
        settings: Mapping[str, str] = os.environ if env is None else env
        name = name.strip() or "AzureWebJobsStorage"
        candidates = [name] if name.startswith("AzureWebJobs") else [f"AzureWebJobs{name}", name]
        for candidate in candidates:
            value = settings.get(candidate)
            if value is not None and value.strip():
                return cls.from_connection_string(value, setting=candidate)
        for candidate in candidates:
            conn = cls._from_identity_settings(candidate, settings)
            if conn is not None:
                return conn
        raise ConnectionSettingError(
            f"storage connection {name!r} is not configured: set {name!r} to a connection string, "
            f"or {name}__accountName / {name}__blobServiceUri / {name}__queueServiceUri for an identity-based "
            "connection"
        )

    @classmethod
    def from_connection_string(cls, value: str, *, setting: str = "<connection string>") -> StorageConnection:
        """Parse a storage connection string (key, SAS, ``UseDevelopmentStorage=true`` or Azurite's form)."""
        parts: dict[str, str] = {}
        for segment in value.strip().split(";"):
            if not segment.strip():
                continue
            part_name, sep, part_value = segment.partition("=")
            if not sep:
                raise ConnectionSettingError(f"setting {setting!r} is not a storage connection string")
            parts[part_name.strip().lower()] = part_value.strip()

        if parts.get("usedevelopmentstorage", "").lower() == "true":
            proxy = parts.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
            endpoints = {s: f"{proxy}:{port}/{DEVSTORE_ACCOUNT_NAME}" for s, port in _DEVSTORE_PORTS.items()}
            return cls(
                setting=setting,
                account_name=DEVSTORE_ACCOUNT_NAME,
                account_key=DEVSTORE_ACCOUNT_KEY,
                blob_endpoint=endpoints["blob"],
                queue_endpoint=endpoints["queue"],
                table_endpoint=endpoints["table"],
            )

        account = parts.get("accountname") or None
        key = parts.get("accountkey") or None
        sas = (parts.get("sharedaccesssignature") or "").lstrip("?") or None
        protocol = parts.get("defaultendpointsprotocol", "https")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        endpoints_found: dict[str, str | None] = {}
        for service in _SERVICES:
            explicit = parts.get(f"{service}endpoint")
            if explicit:
                endpoints_found[service] = explicit.rstrip("/")
            elif account:
                endpoints_found[service] = f"{protocol}://{account}.{service}.{suffix}"
            else:
                endpoints_found[service] = None
        if key is None and sas is None:
            raise ConnectionSettingError(f"setting {setting!r} has neither AccountKey nor SharedAccessSignature")
        if key is not None and account is None:
            raise ConnectionSettingError(f"setting {setting!r} has an AccountKey but no AccountName")
        if not any(endpoints_found.values()):
            raise ConnectionSettingError(f"setting {setting!r} names no account and no service endpoint")
        return cls(
            setting=setting,
            account_name=account,
            account_key=key,
            sas_token=None if key else sas,
            credential_kind="key" if key else "sas",
            blob_endpoint=endpoints_found["blob"],
            queue_endpoint=endpoints_found["queue"],
            table_endpoint=endpoints_found["table"],
        )

    @classmethod
    def _from_identity_settings(cls, name: str, env: Mapping[str, str]) -> StorageConnection | None:
        def get(suffix: str) -> str | None:
            for sep in ("__", ":"):
                value = env.get(f"{name}{sep}{suffix}")
                if value is not None and value.strip():
                    return value.strip()
            return None

        account = get("accountName")
        blob = get("blobServiceUri") or get("serviceUri")
        queue = get("queueServiceUri")
        table = get("tableServiceUri")
        if not (account or blob or queue or table):
            return None
        if account:
            blob = blob or f"https://{account}.blob.core.windows.net"
            queue = queue or f"https://{account}.queue.core.windows.net"
            table = table or f"https://{account}.table.core.windows.net"
        credential = (get("credential") or "").lower()
        if credential and credential != "managedidentity":
            raise ConnectionSettingError(
                f"setting {name}__credential must be 'managedidentity' (or unset), not {credential!r}"
            )
        return cls(
            setting=name,
            account_name=account or _account_from_uri(blob or queue or table or ""),
            blob_endpoint=blob.rstrip("/") if blob else None,
            queue_endpoint=queue.rstrip("/") if queue else None,
            table_endpoint=table.rstrip("/") if table else None,
            credential_kind="managedidentity" if credential else "default",
            client_id=get("clientId"),
        )

    # ------------------------------------------------------------------ properties
    @property
    def has_key(self) -> bool:
        """True when the connection carries a shared key (needed e.g. to sign SAS URLs)."""
        return self.account_key is not None

    @property
    def uses_identity(self) -> bool:
        return self.credential_kind in ("managedidentity", "default")

    @property
    def is_development_storage(self) -> bool:
        return self.account_name == DEVSTORE_ACCOUNT_NAME and self.account_key == DEVSTORE_ACCOUNT_KEY

    def connection_string(self) -> str:
        """A connection string for this account (key or SAS connections only)."""
        if self.uses_identity:
            raise ConnectionSettingError(f"connection {self.setting!r} is identity-based and has no connection string")
        fields: list[str] = []
        if self.account_name:
            fields.append(f"AccountName={self.account_name}")
        if self.account_key:
            fields.append(f"AccountKey={self.account_key}")
        elif self.sas_token:
            fields.append(f"SharedAccessSignature={self.sas_token}")
        for label, endpoint in (
            ("BlobEndpoint", self.blob_endpoint),
            ("QueueEndpoint", self.queue_endpoint),
            ("TableEndpoint", self.table_endpoint),
        ):
            if endpoint:
                fields.append(f"{label}={endpoint}")
        return ";".join(fields) + ";"

    # ------------------------------------------------------------------ clients
    def credential(self) -> str | dict[str, str] | TokenCredential:
        """What to pass as ``credential=`` to an Azure Storage client for this connection."""
        if self.credential_kind == "key" and self.account_name and self.account_key:
            return {"account_name": self.account_name, "account_key": self.account_key}
        if self.credential_kind == "sas" and self.sas_token:
            return self.sas_token
        return self._token_credential()

    def _token_credential(self) -> TokenCredential:
        """One credential per identity per process (its token cache is shared by every client built from it)."""
        return _token_credential(self.credential_kind, self.client_id)

    def blob_service_client(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        if not self.blob_endpoint:
            raise ConnectionSettingError(
                f"connection {self.setting!r} has no blob endpoint (set {self.setting}__blobServiceUri)"
            )
        return BlobServiceClient(account_url=self.blob_endpoint, credential=self.credential())

    def queue_service_client(self, message_encoding: MessageEncoding = "base64") -> QueueServiceClient:
        """A queue service client whose queue clients send and receive ``str`` messages.

        ``"base64"`` (the Functions host's default ``messageEncoding``) base64-encodes UTF-8 text on the wire;
        ``"none"`` sends the text as is (pair it with ``"messageEncoding": "none"`` in host.json). Unlike the
        plain SDK, ``get_queue_client()`` on the returned client keeps the encoding.
        """
        from azure.storage.queue import QueueServiceClient

        if not self.queue_endpoint:
            raise ConnectionSettingError(
                f"connection {self.setting!r} has no queue endpoint (set {self.setting}__queueServiceUri)"
            )
        policies = _encoding_policies(message_encoding)
        if not policies:
            return QueueServiceClient(account_url=self.queue_endpoint, credential=self.credential())
        return _make_encoding_queue_service_client(self.queue_endpoint, self.credential(), policies)

    def queue_client(self, queue_name: str, message_encoding: MessageEncoding = "base64") -> QueueClient:
        """A client for one queue, with the same ``message_encoding`` rules as :meth:`queue_service_client`."""
        return self.queue_service_client(message_encoding).get_queue_client(queue_name)


def _encoding_policies(message_encoding: str) -> dict[str, object]:
    if message_encoding == "none":
        return {}
    if message_encoding != "base64":
        raise ConnectionSettingError(f"message_encoding must be 'base64' or 'none', not {message_encoding!r}")
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

    return {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}


def _make_encoding_queue_service_client(
    endpoint: str, credential: str | dict[str, str] | TokenCredential, policies: dict[str, object]
) -> QueueServiceClient:
    from azure.storage.queue import QueueProperties, QueueServiceClient

    class _EncodingQueueServiceClient(QueueServiceClient):
        # QueueServiceClient.get_queue_client() drops the encode/decode policies it was built with.
        def get_queue_client(self, queue: QueueProperties | str, **kwargs: Any) -> QueueClient:
            for key, value in policies.items():
                kwargs.setdefault(key, value)
            return super().get_queue_client(queue, **kwargs)

    return _EncodingQueueServiceClient(account_url=endpoint, credential=credential, **policies)  # type: ignore[arg-type]


def _account_from_uri(uri: str) -> str | None:
    """``https://acct.blob.core.windows.net`` -> ``acct``; ``http://127.0.0.1:10000/devstoreaccount1`` -> that."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    host = parts.hostname or ""
    if host in ("127.0.0.1", "localhost") or host.replace(".", "").isdigit():
        segment = parts.path.strip("/").split("/", 1)[0]
        return segment or None
    return host.split(".", 1)[0] or None


@functools.lru_cache(maxsize=8)
def _token_credential(kind: str, client_id: str | None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if kind == "managedidentity":
        if client_id:
            return ManagedIdentityCredential(client_id=client_id)
        return ManagedIdentityCredential()
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()
