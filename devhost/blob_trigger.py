"""Blob trigger by polling, with receipts, claims and poison like the host's polling blob trigger.

- Each scan lists the container; every blob version (name + ETag) that matches the path pattern is handled.
- A receipt ``azure-webjobs-hosts/blobreceipts/<hostId>/Host.Functions.<name>/<etag>/<container>/<blob>`` in
  AzureWebJobsStorage records it. The receipt is created with If-None-Match: * and worked on only under a blob
  lease, so devhosts sharing one storage account never run the same version at once, and a ``Complete``
  receipt is never run again, restart or not.
- The attempt count is written before the handler runs (so a crash counts). A failure is retried on the next
  scan; after ``maxDequeueCount`` (5) failures a message goes to ``webjobs-blobtrigger-poison``.
- ``source="EventGrid"`` is served by the same polling unless ``DEVHOST_EVENT_GRID=true``: then nothing is
  polled and the function runs on ``Microsoft.Storage.BlobCreated`` events POSTed to the host's blobs
  extension endpoint (:mod:`devhost.eventgrid`), as on Flex Consumption; ``python -m devhost.eventgrid_publisher``
  turns Azurite blob writes into such events.

At-least-once, like the host: a devhost killed mid-invocation leaves an Incomplete receipt that is retried
once its lease runs out.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.functions.blob import InputStream
from azure.storage.blob import BlobClient, BlobProperties

from devhost.config import ConfigError, resolve_expressions
from devhost.functions import FunctionSpec
from devhost.leases import HOSTS_CONTAINER, HeldLease, ensure_container
from devhost.runtime import Runtime

log = logging.getLogger("devhost")

POISON_QUEUE = "webjobs-blobtrigger-poison"
EVENT_GRID_SETTING = "DEVHOST_EVENT_GRID"


def event_grid_mode(env: Any) -> bool:
    """Whether `source="EventGrid"` blob triggers run on events (``DEVHOST_EVENT_GRID=true``) instead of polling."""
    return str(env.get(EVENT_GRID_SETTING, "")).lower() in ("1", "true", "yes")
DONE_STATUSES = ("Complete", "Poisoned", "Superseded")


def compile_path(pattern: str) -> tuple[str, re.Pattern[str]]:
    """``in/{name}.json`` -> (listing prefix ``in/``, regex with named groups). ``{name}`` may span folders."""
    prefix = pattern.split("{", 1)[0]
    regex, pos = "", 0
    for match in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", pattern):
        regex += re.escape(pattern[pos:match.start()]) + f"(?P<{match.group(1)}>.+?)"
        pos = match.end()
    regex += re.escape(pattern[pos:])
    return prefix, re.compile(f"^{regex}$")


def _sdk_blob_types() -> tuple[type, ...]:
    try:
        from azurefunctions.extensions.bindings.blob import BlobClient as ExtBlobClient
        from azurefunctions.extensions.bindings.blob import ContainerClient, StorageStreamDownloader
    except ImportError:
        return ()
    return (ExtBlobClient, ContainerClient, StorageStreamDownloader)


class _ModelBindingData:
    """What the host sends the worker for SDK-type blob bindings (the protobuf ModelBindingData's fields)."""

    def __init__(self, connection: str, container: str, blob: str) -> None:
        self.version = "1.0"
        self.source = "AzureStorageBlobs"
        self.content_type = "application/json"
        self.content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": blob})


class BlobTriggerListener:
    def __init__(self, spec: FunctionSpec, rt: Runtime) -> None:
        self.spec = spec
        self.rt = rt
        path = resolve_expressions(str(spec.trigger["path"]), rt.env, where=f"function {spec.name} path")
        container, sep, pattern = path.partition("/")
        if not sep or not container:
            raise ConfigError(f"function {spec.name}: blob path {path!r} must be 'container/pattern'")
        self.container_name = container
        self.prefix, self.regex = compile_path(pattern or "{name}")
        self.connection = rt.connection(spec.trigger.get("connection"))
        self.container = self.connection.blob_service_client().get_container_client(container)
        self.hosts = rt.host_storage().blob_service_client().get_container_client(HOSTS_CONTAINER)
        self.done: set[tuple[str, str]] = set()
        self.source = spec.trigger.get("source") or "LogsAndContainerScan"
        self.event_driven = self.source == "EventGrid" and event_grid_mode(rt.env)
        self._missing_logged = False
        target = self.rt.stop.wait if self.event_driven else self.run
        self.thread = threading.Thread(target=target, name=f"blob-{spec.name}", daemon=True)

    def describe(self) -> str:
        how = "Event Grid events at /runtime/webhooks/blobs" if self.event_driven else "polled"
        return f"{self.spec.name} <- blob {self.container_name}/{self.prefix}* (source={self.source}, {how})"

    def start(self) -> None:
        ensure_container(self.hosts)
        if self.source == "EventGrid" and not self.event_driven:
            log.info("function %s: source=EventGrid is served by polling locally (DEVHOST_EVENT_GRID=true for "
                     "events)", self.spec.name)
        self.thread.start()

    def handle_event(self, blob_name: str, etag: str) -> str:
        """Run the function for the blob version a BlobCreated event names; retried like a queue message.

        An event for a version that is no longer current is skipped (the content it announced is gone), as is
        one whose version already has a Complete receipt (a duplicate delivery).
        """
        match = self.regex.match(blob_name) if blob_name.startswith(self.prefix) else None
        if match is None:
            return "not matched by the path"
        try:
            props = self.container.get_blob_client(blob_name).get_blob_properties()
        except ResourceNotFoundError:
            return "blob gone"
        current = '"' + str(props.etag).strip('"') + '"'
        if current != etag:
            return f"superseded (the blob is now {current})"
        for attempt in range(self.rt.host.max_dequeue_count):
            self.process(props, etag, match.groupdict())
            if (blob_name, etag) in self.done:
                return "done"
            if self.rt.stop.wait(min(30.0, 0.5 * 2**attempt)):  # the queue's visibility timeout between tries
                return "stopping"
        return "not finished (another host holds it, or it was poisoned)"

    def run(self) -> None:
        while not self.rt.stop.is_set():
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - storage hiccups must not end the listener
                log.exception("blob scan for %s failed; retrying", self.spec.name)
            self.rt.stop.wait(self.rt.poll_interval)

    def scan(self) -> None:
        try:
            blobs = list(self.container.list_blobs(name_starts_with=self.prefix or None))
        except ResourceNotFoundError:
            if not self._missing_logged:
                log.warning("function %s: container %r does not exist yet", self.spec.name, self.container_name)
                self._missing_logged = True
            return
        for props in blobs:
            if self.rt.stop.is_set():
                return
            match = self.regex.match(props.name)
            if not match:
                continue
            etag = '"' + str(props.etag).strip('"') + '"'  # listings omit the quotes that HTTP ETags carry
            if (props.name, etag) in self.done:
                continue
            self.process(props, etag, match.groupdict())

    def _receipt(self, blob_name: str, etag: str) -> BlobClient:
        return self.hosts.get_blob_client(
            f"blobreceipts/{self.rt.host_id}/{self.spec.function_id}/{etag.strip(chr(34))}/"
            f"{self.container_name}/{blob_name}"
        )

    def process(self, props: BlobProperties, etag: str, binding_data: dict[str, str]) -> None:
        receipt = self._receipt(props.name, etag)
        try:
            status = receipt.get_blob_properties().metadata.get("Status")
        except ResourceNotFoundError:
            status = None
            try:  # the claim: only one writer creates it (If-None-Match: *)
                receipt.upload_blob(b"", overwrite=False, metadata={"Status": "Incomplete", "Attempts": "0"})
            except (ResourceExistsError, HttpResponseError):
                pass  # someone else created (and maybe leased) it: the lease below decides
        if status in DONE_STATUSES:
            self.done.add((props.name, etag))
            return
        held = HeldLease.try_acquire(receipt)
        if held is None:
            return  # another devhost is working on this version
        with held:
            meta = receipt.get_blob_properties(lease=held.id).metadata
            if meta.get("Status") in DONE_STATUSES:
                self.done.add((props.name, etag))
                return
            attempt = int(meta.get("Attempts", "0")) + 1
            receipt.set_blob_metadata({"Status": "Incomplete", "Attempts": str(attempt)}, lease=held.id)
            detail = f"blob {self.container_name}/{props.name} etag={etag} attempt {attempt}"
            try:
                value = self.build_argument(props, etag, binding_data)
            except ResourceNotFoundError:
                value = None
            except HttpResponseError as exc:
                if exc.status_code != 412:
                    raise
                value = None
            if value is None:
                log.info("blob %s/%s changed or vanished before %s ran; this version is skipped",
                         self.container_name, props.name, self.spec.name)
                receipt.set_blob_metadata({"Status": "Superseded", "Attempts": str(attempt)}, lease=held.id)
                self.done.add((props.name, etag))
                return
            outcome = self.rt.invoke(self.spec, value, detail)
            if held.lost.is_set():
                log.warning("%s: lease on the receipt was lost; another devhost may run it again", detail)
                return
            if outcome.ok:
                receipt.set_blob_metadata({"Status": "Complete", "Attempts": str(attempt)}, lease=held.id)
                self.done.add((props.name, etag))
            elif attempt >= self.rt.host.max_dequeue_count:
                self.poison(props, etag)
                receipt.set_blob_metadata({"Status": "Poisoned", "Attempts": str(attempt)}, lease=held.id)
                self.done.add((props.name, etag))

    def poison(self, props: BlobProperties, etag: str) -> None:
        message = {
            "Type": "BlobTrigger",
            "FunctionId": self.spec.function_id,
            "BlobType": str(getattr(props.blob_type, "value", props.blob_type) or "BlockBlob"),
            "ContainerName": self.container_name,
            "BlobName": props.name,
            "ETag": etag,
        }
        queue = self.connection.queue_client(POISON_QUEUE, message_encoding=self.rt.host.message_encoding)  # type: ignore[arg-type]
        try:
            queue.create_queue()
        except ResourceExistsError:
            pass
        queue.send_message(json.dumps(message))
        log.error("blob %s/%s failed %d times in %s: moved to queue %s", self.container_name, props.name,
                  self.rt.host.max_dequeue_count, self.spec.name, POISON_QUEUE)

    def build_argument(self, props: BlobProperties, etag: str, binding_data: dict[str, str]) -> Any:
        """The trigger argument for the handler's annotation; None when this version is gone."""
        annotation = self.spec.annotation(self.spec.trigger_param)
        sdk_types = _sdk_blob_types()
        blob = self.container.get_blob_client(props.name)
        if isinstance(annotation, type) and sdk_types and issubclass(annotation, sdk_types):
            current = blob.get_blob_properties()
            if str(current.etag).strip('"') != etag.strip('"'):
                return None
            from azurefunctions.extensions.base import Datum
            from azurefunctions.extensions.bindings.blob import BlobClientConverter

            datum = Datum(_ModelBindingData(self.connection.setting, self.container_name, props.name),
                          "model_binding_data")
            metadata = {"BlobTrigger": f"{self.container_name}/{props.name}", "Uri": blob.url, **binding_data}
            return BlobClientConverter.decode(datum, trigger_metadata=metadata, pytype=annotation)
        # InputStream, bytes, str: the whole blob is read into memory, as the host does for these types.
        downloader = blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        data = downloader.readall()
        if annotation is bytes:
            return data
        if annotation is str:
            return data.decode("utf-8")
        return InputStream(
            data=data,
            name=f"{self.container_name}/{props.name}",
            uri=blob.url,
            length=len(data),
            blob_properties={
                "ContentType": downloader.properties.content_settings.content_type,
                "ETag": etag,
                "LastModified": str(downloader.properties.last_modified),
                "Length": len(data),
            },
            metadata=dict(downloader.properties.metadata or {}),
        )
