"""pytest plugin: one real Azurite per test session, plus clients and unique names.

Fixtures:
- ``azurite`` (session): a running :class:`devhost.azurite.Azurite` (``.connection_string``, ``.blob_endpoint``,
  ``.queue_endpoint``, ``.table_endpoint``, ``.account_name``, ``.account_key``, ``.env()``).
- ``azurite_connection`` (session): a :class:`shared.connections.StorageConnection` for it.
- ``blob_service`` / ``queue_service``: SDK clients (queue messages base64 like the Functions host).
- ``unique_name``: a factory ``unique_name("prefix") -> "prefix-1a2b3c4d"``, valid as a container or queue name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.azurite import Azurite
from shared.connections import StorageConnection


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


@pytest.fixture(scope="session")
def azurite_connection(azurite: Azurite) -> StorageConnection:
    return StorageConnection.from_settings("AzureWebJobsStorage", azurite.env())


@pytest.fixture
def blob_service(azurite_connection: StorageConnection) -> BlobServiceClient:
    return azurite_connection.blob_service_client()


@pytest.fixture
def queue_service(azurite_connection: StorageConnection) -> QueueServiceClient:
    return azurite_connection.queue_service_client(message_encoding="base64")


def make_unique_name(prefix: str = "t") -> str:
    """A lowercase name valid for containers and queues (3-63 chars, letters, digits, dashes)."""
    clean = "".join(c if c.isalnum() else "-" for c in prefix.lower()).strip("-")[:40] or "t"
    return f"{clean}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    return make_unique_name
