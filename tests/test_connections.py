"""shared.connections: settings resolved like the Functions host, checked against real Azurite."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite
from shared.connections import (
    DEVSTORE_ACCOUNT_KEY,
    ConnectionSettingError,
    StorageConnection,
    azurite_connection_string,
)


def test_use_development_storage() -> None:
    conn = StorageConnection.from_settings("AzureWebJobsStorage", {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert conn.account_name == "devstoreaccount1"
    assert conn.account_key == DEVSTORE_ACCOUNT_KEY
    assert conn.has_key
    assert conn.blob_endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    assert conn.queue_endpoint == "http://127.0.0.1:10001/devstoreaccount1"
    assert conn.table_endpoint == "http://127.0.0.1:10002/devstoreaccount1"
    assert conn.is_development_storage


def test_azurite_explicit_form_roundtrips() -> None:
    cs = azurite_connection_string(11000, 11001, 11002)
    conn = StorageConnection.from_settings("Store", {"Store": cs})
    assert conn.blob_endpoint == "http://127.0.0.1:11000/devstoreaccount1"
    assert conn.queue_endpoint == "http://127.0.0.1:11001/devstoreaccount1"
    again = StorageConnection.from_connection_string(conn.connection_string())
    assert again.blob_endpoint == conn.blob_endpoint and again.account_key == conn.account_key


def test_account_key_string_with_suffix() -> None:
    cs = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5PT0=;EndpointSuffix=core.windows.net"
    conn = StorageConnection.from_settings("AzureWebJobsStorage", {"AzureWebJobsStorage": cs})
    assert conn.account_name == "acct"
    assert conn.account_key == "c2VjcmV0a2V5PT0="
    assert conn.blob_endpoint == "https://acct.blob.core.windows.net"
    assert conn.queue_endpoint == "https://acct.queue.core.windows.net"
    assert "c2VjcmV0a2V5PT0=" not in repr(conn)


def test_azurewebjobs_prefix_is_tried_first() -> None:
    env = {
        "AzureWebJobsMyStore": "AccountName=first;AccountKey=a2V5",
        "MyStore": "AccountName=second;AccountKey=a2V5",
    }
    assert StorageConnection.from_settings("MyStore", env).account_name == "first"
    assert StorageConnection.from_settings("", {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).has_key


def test_sas_connection_string() -> None:
    cs = "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=abc%3D"
    conn = StorageConnection.from_connection_string(cs)
    assert not conn.has_key
    assert conn.credential() == "sv=2022-11-02&sig=abc%3D"
    assert conn.blob_endpoint == "https://acct.blob.core.windows.net"
    assert conn.queue_endpoint is None


def test_identity_account_name_system_assigned() -> None:
    env = {"AzureWebJobsStorage__accountName": "prodacct"}
    conn = StorageConnection.from_settings("AzureWebJobsStorage", env)
    assert conn.account_key is None and not conn.has_key and conn.uses_identity
    assert conn.blob_endpoint == "https://prodacct.blob.core.windows.net"
    assert conn.queue_endpoint == "https://prodacct.queue.core.windows.net"
    assert conn.table_endpoint == "https://prodacct.table.core.windows.net"
    assert isinstance(conn.credential(), DefaultAzureCredential)
    client = conn.blob_service_client()
    assert client.account_name == "prodacct"


def test_identity_service_uris_user_assigned() -> None:
    env = {
        "Data__blobServiceUri": "https://dataacct.blob.core.windows.net/",
        "Data__queueServiceUri": "https://dataacct.queue.core.windows.net",
        "Data__credential": "managedidentity",
        "Data__clientId": "00000000-0000-0000-0000-000000000001",
    }
    conn = StorageConnection.from_settings("Data", env)
    assert conn.account_name == "dataacct"
    assert conn.blob_endpoint == "https://dataacct.blob.core.windows.net"
    assert conn.client_id == "00000000-0000-0000-0000-000000000001"
    assert isinstance(conn.credential(), ManagedIdentityCredential)
    assert conn.queue_service_client().account_name == "dataacct"
    with pytest.raises(ConnectionSettingError, match="no connection string"):
        conn.connection_string()


def test_identity_colon_separator_and_missing_queue_endpoint() -> None:
    conn = StorageConnection.from_settings("Data", {"Data:blobServiceUri": "https://x.blob.core.windows.net"})
    assert conn.blob_endpoint == "https://x.blob.core.windows.net"
    with pytest.raises(ConnectionSettingError, match="Data__queueServiceUri"):
        conn.queue_service_client()


def test_missing_setting_names_it() -> None:
    with pytest.raises(ConnectionSettingError, match="'Nope'.*Nope__accountName"):
        StorageConnection.from_settings("Nope", {})


def test_errors_never_echo_the_key() -> None:
    with pytest.raises(ConnectionSettingError) as info:
        StorageConnection.from_settings("S", {"S": "AccountKey=c3VwZXJzZWNyZXQ="})
    assert "c3VwZXJzZWNyZXQ=" not in str(info.value)
    assert "'S'" in str(info.value)
    with pytest.raises(ConnectionSettingError) as info:
        StorageConnection.from_settings("S", {"S": "garbage-c3VwZXJzZWNyZXQ"})
    assert "c3VwZXJzZWNyZXQ" not in str(info.value)


def test_bad_credential_kind() -> None:
    with pytest.raises(ConnectionSettingError, match="managedidentity"):
        StorageConnection.from_settings("S", {"S__accountName": "a", "S__credential": "clientsecret"})


def test_clients_against_azurite(azurite: Azurite, unique_name: Callable[[str], str]) -> None:
    conn = StorageConnection.from_settings("AzureWebJobsStorage", azurite.env())
    name = unique_name("conn")
    blobs = conn.blob_service_client()
    blobs.create_container(name)
    blobs.get_blob_client(name, "a.txt").upload_blob(b"hi")
    assert blobs.get_blob_client(name, "a.txt").download_blob().readall() == b"hi"

    queues = conn.queue_service_client(message_encoding="base64")
    queues.create_queue(name)
    queues.get_queue_client(name).send_message("héllo")
    raw = QueueClient.from_connection_string(azurite.connection_string, name)
    assert raw.peek_messages()[0].content == "aMOpbGxv"  # base64 on the wire, like the Functions host
    assert conn.queue_client(name).receive_message().content == "héllo"

    conn.queue_client(name, message_encoding="none").send_message("plain")
    assert [m.content for m in raw.peek_messages(max_messages=5)][-1] == "plain"


def test_one_token_credential_per_identity_per_process() -> None:
    from shared.connections import StorageConnection

    env = {"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__credential": "managedidentity"}
    a = StorageConnection.from_settings("AzureWebJobsStorage", env)
    b = StorageConnection.from_settings("AzureWebJobsStorage", env)
    assert a.credential() is b.credential()  # every client built from it shares one token cache
