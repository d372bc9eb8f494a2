"""The run commands of the CLI: `drop`, `runs`, `status`.

They talk to the same storage the app uses, with the app's own settings: `--settings FILE` (a
local.settings.json), else `$FT_SETTINGS`, else ./local.settings.json, else ./.stack/local.settings.json
(written by `make dev`), else the environment alone.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.runstore import RunNotFound
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import AlreadySubmitted, SubmissionError, drop_file
from shared.summary import run_summary

SETTINGS_CANDIDATES = ("local.settings.json", ".stack/local.settings.json")


def add_run_commands(sub: Any) -> None:
    """Register `drop`, `runs` and `status` on an argparse subparsers object."""
    drop = sub.add_parser("drop", help="upload a training file into the drop container (starts a run)")
    drop.add_argument("file")
    drop.add_argument("--name", help="blob name (default: the file name; a folder selects a profile)")
    drop.add_argument("--profile", help="profile name (profiles/<NAME>.json in the runs container)")
    drop.add_argument("--validation", help="a validation file, uploaded first as <name>.validation.jsonl")
    drop.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="spec keys (repeatable)")
    drop.set_defaults(func=cmd_drop)

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--state", help="only runs in this state")
    runs.add_argument("--limit", type=int, default=30)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

    status = sub.add_parser("status", help="one run's record")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true", help="print the whole record as JSON")
    status.set_defaults(func=cmd_status)

    cleanup = sub.add_parser("cleanup", help="delete a run's deployment and uploaded files (the model stays)")
    cleanup.add_argument("run_id")
    cleanup.add_argument("--keep-deployment", action="store_true")
    cleanup.add_argument("--keep-files", action="store_true")
    cleanup.set_defaults(func=cmd_cleanup)

    for p in (drop, runs, status, cleanup):
        p.add_argument("--settings", help="local.settings.json to read settings from")


def load_env(path: str | None) -> dict[str, str]:
    """os.environ plus the Values of a local.settings.json (the environment wins, as with func)."""
    env = dict(os.environ)
    candidate = (
        path or os.environ.get("FT_SETTINGS") or next((c for c in SETTINGS_CANDIDATES if Path(c).is_file()), None)
    )
    if candidate:
        try:
            values = json.loads(Path(candidate).read_text(encoding="utf-8-sig")).get("Values", {})
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"cannot read settings file {candidate}: {exc}") from None
        for key, value in values.items():
            env.setdefault(key, str(value))
    return env


def services_for(args: argparse.Namespace) -> Services:
    env = load_env(getattr(args, "settings", None))
    services = Services.from_settings(settings_from_env(env), env=env)
    services.ensure_storage()
    return services


def cmd_drop(args: argparse.Namespace) -> int:
    metadata: dict[str, str] = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"--meta {item!r}: expected KEY=VALUE")
            return 2
        metadata[key.strip()] = value.strip()
    if args.profile:
        metadata["profile"] = args.profile
    if not Path(args.file).is_file():
        print(f"{args.file}: no such file")
        return 2
    services = services_for(args)
    try:
        blob_name, run_id = drop_file(
            services, args.file, name=args.name, validation_path=args.validation, metadata=metadata
        )
    except AlreadySubmitted as exc:
        print(f"{exc.blob_name} is already in the drop container (run {exc.run_id}); use --name for a new run")
        return 1
    except SubmissionError as exc:
        print(str(exc))
        return 2
    print(f"dropped {services.settings.drop_container}/{blob_name}: run {run_id}")
    print(f"follow it with: python -m shared.cli status {run_id}")
    return 0


def _age(at: datetime) -> str:
    seconds = int((datetime.now(UTC) - at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cmd_runs(args: argparse.Namespace) -> int:
    services = services_for(args)
    records = sorted(services.store.iter_records(), key=lambda r: r.created_at, reverse=True)
    price = services.settings.price_per_million_training_tokens
    summaries = [run_summary(r, price_per_million_tokens=price) for r in records]
    if args.state:
        summaries = [s for s in summaries if s.state == args.state]
    summaries = summaries[: args.limit]
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2))
        return 0
    if not summaries:
        print("no runs yet")
        return 0
    header = ("RUN", "STATE", "AGE", "EXAMPLES", "JOB", "MODEL / ERROR")
    rows = [
        (
            s.id,
            s.state,
            _age(s.created_at),
            str(s.examples) if s.examples is not None else "-",
            s.job_status or "-",
            (s.deployment and f"deployed as {s.deployment}")
            or s.fine_tuned_model
            or (s.error.message[:70] if s.error else ""),
        )
        for s in summaries
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + str(row[-1]))
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from shared.cleanup import cleanup_run

    services = services_for(args)
    try:
        done = cleanup_run(services, args.run_id, deployment=not args.keep_deployment, files=not args.keep_files)
    except RunNotFound:
        print(f"no run {args.run_id!r}")
        return 1
    print("\n".join(done) if done else "nothing to clean up")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    services = services_for(args)
    try:
        r = services.store.get(args.run_id)
    except RunNotFound:
        print(f"no run {args.run_id!r}")
        return 1
    if args.json:
        print(r.model_dump_json(indent=2))
        return 0
    print(f"run {r.id}: {r.state.value}")
    print(f"  source      {r.source.container}/{r.source.blob_name} (sha256 {(r.source.sha256 or '-')[:16]})")
    if r.spec:
        print(f"  model       {r.spec.model} ({r.spec.method}), suffix {r.spec.suffix or '-'}")
    if r.validation:
        v = r.validation
        print(
            f"  validation  {'valid' if v.valid else 'INVALID'}: {v.examples} examples, {v.format}, "
            f"{v.errors} errors, {v.warnings} warnings, {v.billed_tokens or '-'} billed tokens"
        )
        for line in v.first_errors:
            print(f"              {line}")
    if r.job.id:
        metrics = r.job.latest_metrics
        loss = f", step {metrics.get('step')} train_loss {metrics.get('train_loss')}" if metrics else ""
        print(f"  job         {r.job.id}: {r.job.status}{loss}")
    if r.job.fine_tuned_model:
        print(f"  model out   {r.job.fine_tuned_model} ({r.job.trained_tokens} tokens)")
    if r.deployment.name:
        d = r.deployment
        print(f"  deployment  {d.name}: {d.provisioning_state or '-'} ({d.sku}, capacity {d.capacity})")
        if d.smoke_test:
            answer = (d.smoke_test.answer or "")[:80]
            print(f"  smoke test  {d.smoke_test.status} in {d.smoke_test.latency_ms} ms: {answer}")
    for w in r.warnings:
        print(f"  warning     {w}")
    if r.error:
        print(f"  error       {r.error.code}: {r.error.message}")
    print("  history")
    for h in r.history:
        print(f"    {h.at:%Y-%m-%d %H:%M:%S}  {h.state.value:<10} {h.note}")
    return 0
