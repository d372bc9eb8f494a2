"""Blob leases kept alive in the background: the locks behind blob receipts and timer singletons."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

log = logging.getLogger("devhost")

HOSTS_CONTAINER = "azure-webjobs-hosts"
LEASE_SECONDS = 30  # Azure allows 15-60 s or infinite; a crashed holder's lease runs out after this


def ensure_container(container: ContainerClient) -> None:
    try:
        container.create_container()
    except ResourceExistsError:
        pass


def ensure_blob(blob: BlobClient, data: bytes = b"") -> None:
    """Create an empty blob if it is missing, never overwriting one (If-None-Match: *)."""
    try:
        blob.upload_blob(data, overwrite=False)
    except ResourceExistsError:
        pass
    except HttpResponseError as exc:
        # leased by another holder: it exists
        if getattr(exc, "error_code", None) not in ("LeaseIdMissing", "BlobAlreadyExists"):
            raise


class HeldLease:
    """A lease on one blob, renewed every third of its duration until released.

    ``lost`` is set when a renewal fails (someone else may now hold the blob): stop acting on it.
    """

    def __init__(self, blob: BlobClient, lease: BlobLeaseClient, seconds: int = LEASE_SECONDS) -> None:
        self.blob = blob
        self.lease = lease
        self.seconds = seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{blob.blob_name}", daemon=True)
        self._thread.start()

    @classmethod
    def try_acquire(cls, blob: BlobClient, seconds: int = LEASE_SECONDS) -> HeldLease | None:
        """Acquire the blob's lease, or None when another holder has it."""
        lease = BlobLeaseClient(blob)
        try:
            lease.acquire(lease_duration=seconds)
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent
                return None
            raise
        return cls(blob, lease, seconds)

    @property
    def id(self) -> str:
        return str(self.lease.id)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.lease.renew()
            except Exception as exc:  # noqa: BLE001 - any failure means the lease can no longer be trusted
                log.warning("lost the lease on %s/%s: %s", self.blob.container_name, self.blob.blob_name, exc)
                self.lost.set()
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.lost.is_set():
            return
        try:
            self.lease.release()
        except Exception as exc:  # noqa: BLE001 - an unreleased lease expires on its own
            log.debug("releasing lease on %s failed: %s", self.blob.blob_name, exc)

    def __enter__(self) -> HeldLease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
