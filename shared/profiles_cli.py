"""`python -m shared.cli profile put|get|list`: the run profiles in the runs container (`profiles/<name>.json`).

`put NAME FILE` checks the profile as the blob trigger will (strict keys, then the whole spec against the app
settings) and writes it only when it is usable; `get NAME` prints it; `list` names every profile.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from azure.storage.blob import ContentSettings

from shared.spec import SpecError, build_spec, parse_profile, profile_blob_name

PREFIX = "profiles/"


def add_profile_commands(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    profile = sub.add_parser("profile", help="manage run profiles (profiles/<NAME>.json in the runs container)")
    verbs = profile.add_subparsers(dest="verb", required=True, metavar="VERB")
    put = verbs.add_parser("put", help="check a profile file and store it as NAME")
    put.add_argument("name")
    put.add_argument("file")
    put.set_defaults(func=cmd_put)
    get = verbs.add_parser("get", help="print a profile")
    get.add_argument("name")
    get.set_defaults(func=cmd_get)
    listing = verbs.add_parser("list", help="list the profiles")
    listing.set_defaults(func=cmd_list)
    for p in (put, get, listing):
        p.add_argument("--settings", help="local.settings.json to read settings from")
    common.extend((put, get, listing))


def _errors() -> Any:
    from shared.runs_cli import CommandError

    return CommandError


def cmd_put(args: argparse.Namespace) -> int:
    from shared.runs_cli import services_for

    CommandError = _errors()  # noqa: N806 - the class, imported late
    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{args.file}: no such file")
    data = path.read_bytes()
    try:
        blob_name = profile_blob_name(args.name)
        doc = parse_profile(args.name, data)
    except SpecError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    services = services_for(args)
    try:
        spec = build_spec(services.settings, metadata={}, profile_name=args.name, profile=doc)
    except SpecError as exc:
        raise CommandError(f"profile {args.name!r}: {exc}", exit_code=1) from None
    services.store.container.upload_blob(
        blob_name, json.dumps(doc, indent=2), overwrite=True,
        content_settings=ContentSettings(content_type="application/json"),
    )
    print(f"profile {args.name} stored as {services.settings.runs_container}/{blob_name}: model {spec.model}, "
          f"priority {spec.priority}, deploy {'yes' if spec.deployment.enabled else 'no'}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from shared.runs_cli import services_for

    CommandError = _errors()  # noqa: N806
    try:
        blob_name = profile_blob_name(args.name)
    except SpecError as exc:
        raise CommandError(str(exc)) from None
    data = services_for(args).store.get_artifact_at(blob_name)
    if data is None:
        raise CommandError(f"no profile {args.name!r}", exit_code=1)
    print(data.decode("utf-8", "replace").rstrip())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from shared.runs_cli import services_for

    services = services_for(args)
    for blob in services.store.container.list_blobs(name_starts_with=PREFIX):
        name = blob.name[len(PREFIX):]
        if name.endswith(".json") and "/" not in name:
            print(name[: -len(".json")])
    return 0
