"""The blob claim in-process: while one listener runs a blob version, another (another devhost) must not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devhost.azurite import Azurite
from devhost.blob_trigger import BlobTriggerListener
from devhost.config import HostConfig
from devhost.functions import FunctionSpec, Invoker
from devhost.leases import ensure_container
from devhost.runtime import Runtime
from tests.devhost.conftest import wait_for


@pytest.fixture
def invoker(tmp_path: Path) -> Iterator[Invoker]:
    inv = Invoker(tmp_path, None)
    yield inv
    inv.close()


def test_a_running_blob_version_is_not_claimed_twice(
    azurite: Azurite, invoker: Invoker, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    container = unique_name("claims")
    calls: list[bytes] = []
    entered, release = threading.Event(), threading.Event()

    def claim_fn(data: bytes) -> None:
        calls.append(data)
        entered.set()
        assert release.wait(20)

    spec = FunctionSpec(name="claim_fn", kind="blob", handler=claim_fn,
                        trigger={"type": "blobTrigger", "name": "data", "path": f"{container}/{{name}}",
                                 "connection": "AzureWebJobsStorage"})

    host_id = unique_name("claims")

    def listener() -> BlobTriggerListener:  # one per "devhost": own runtime, own clients, same host id
        rt = Runtime(env=azurite.env(), host=HostConfig(), host_id=host_id, poll_interval=0.1, invoker=invoker,
                     app_dir=tmp_path)
        made = BlobTriggerListener(spec, rt)
        ensure_container(made.hosts)
        return made

    first, second = listener(), listener()
    first.container.create_container()
    first.container.upload_blob("x.txt", b"payload")
    runner = threading.Thread(target=first.scan)
    runner.start()
    wait_for(entered.is_set, "the first listener to start the handler")
    second.scan()  # the receipt is leased: the second devhost must leave it alone
    assert calls == [b"payload"]
    release.set()
    runner.join(timeout=20)
    second.scan()  # now the receipt says Complete
    assert calls == [b"payload"]
    etag = str(first.container.get_blob_client("x.txt").get_blob_properties().etag)
    receipt = first._receipt("x.txt", etag)
    assert receipt.get_blob_properties().metadata == {"Status": "Complete", "Attempts": "1"}
