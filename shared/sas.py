"""Read-only, short-lived SAS URLs for exactly one blob, handed to the files import API.

Under a managed identity the SAS is a *user-delegation* SAS (signed with a key Entra ID hands out, no
account key anywhere). An account-key SAS is made only when the connection itself has a key (Azurite, or a
deployment that chose keys). The URL is a secret: callers pass it to the import call and nowhere else, and
`redact_url` is what goes into logs and records.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

# Clock skew allowance: a SAS valid from a few minutes ago works even if the service's clock is ahead.
_SKEW = timedelta(minutes=5)


def blob_read_url(
    service: BlobServiceClient,
    container: str,
    blob: str,
    *,
    ttl: timedelta,
    account_key: str | None,
    snapshot: str | None = None,
    now: datetime | None = None,
) -> str:
    """A URL that can read `container/blob` (that snapshot of it, when given; nothing else) until `now + ttl`."""
    start = (now or datetime.now(UTC)) - _SKEW
    expiry = start + _SKEW + ttl
    account_name = service.account_name
    if not account_name:
        raise ValueError("the storage connection does not name its account; cannot sign a SAS")
    permission = BlobSasPermissions(read=True)
    if account_key:
        token = generate_blob_sas(
            account_name,
            container,
            blob,
            snapshot=snapshot,
            account_key=account_key,
            permission=permission,
            start=start,
            expiry=expiry,
        )
    else:
        delegation_key = service.get_user_delegation_key(key_start_time=start, key_expiry_time=expiry)
        token = generate_blob_sas(
            account_name,
            container,
            blob,
            snapshot=snapshot,
            user_delegation_key=delegation_key,
            permission=permission,
            start=start,
            expiry=expiry,
        )
    url = service.get_blob_client(container, blob, snapshot=snapshot).url
    return f"{url}{'&' if '?' in url else '?'}{token}"


def redact_url(url: str) -> str:
    """The URL without its userinfo (`user:password@`), query string (where a SAS signature lives) or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unparseable URL)"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
