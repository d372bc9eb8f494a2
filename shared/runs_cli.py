"""The run commands of the CLI: `drop`, `runs`, `status`, `cleanup`, `promote`, `rollback`.

They talk to the same storage the app uses, with the app's own settings: `--settings FILE` (a
local.settings.json), else `$FT_SETTINGS`, else ./local.settings.json, else ./.stack/local.settings.json
(written by `make dev`), else the environment alone.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.names import InvalidName
from shared.runs import RunRecord, RunState
from shared.runstore import Backfill, RunNotFound
from shared.sas import redact_url
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import AlreadySubmitted, SubmissionError, check_submission, drop_file
from shared.summary import RunSummary, run_summary

SETTINGS_CANDIDATES = ("local.settings.json", ".stack/local.settings.json")
STATES = [state.value for state in RunState]


class CommandError(Exception):
    """An expected failure of a run command: one line on stderr and `exit_code` (2: cannot run, 1: refused)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
    runs.add_argument("--state", choices=STATES, metavar="STATE", help=f"only runs in this state ({', '.join(STATES)})")
    runs.add_argument("--limit", type=int, default=30)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

    status = sub.add_parser("status", help="one run's record")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true", help="print the whole record as JSON")
    status.set_defaults(func=cmd_status)

    cleanup = sub.add_parser("cleanup", help="delete a run's deployment and uploaded files (the model stays), or "
                             "apply the retention policy to every ended run (--policy)")
    cleanup.add_argument("run_id", nargs="?")
    cleanup.add_argument("--keep-deployment", action="store_true")
    cleanup.add_argument("--keep-files", action="store_true")
    cleanup.add_argument("--policy", action="store_true", help="apply the retention policy (shared/retention.py)")
    cleanup.add_argument("--dry-run", action="store_true", help="with --policy: show what it would do, change nothing")
    cleanup.add_argument("--json", action="store_true", help="with --policy: the rows as JSON")
    cleanup.set_defaults(func=cmd_cleanup)

    promote = sub.add_parser("promote", help="serve a run's model on its serving deployment (serve_as)")
    promote.add_argument("run_id")
    promote.add_argument("--deployment", help="the serving deployment (default: the run's serve_as)")
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser("rollback", help="serve again the model a deployment served before its last change")
    rollback.add_argument("deployment")
    rollback.set_defaults(func=cmd_rollback)


    cancel = sub.add_parser("cancel", help="cancel a run: its job, or the pipeline wherever it stands (idempotent)")
    cancel.add_argument("run_id")
    cancel.set_defaults(func=cmd_cancel)
    redeploy = sub.add_parser("redeploy", help="deploy the trained model of a run whose deploy failed or was skipped")
    redeploy.add_argument("run_id")
    redeploy.set_defaults(func=cmd_redeploy)
    pause = sub.add_parser("pause", help="pause a training run's job (v1 surface or a preview api-version)")
    pause.add_argument("run_id")
    pause.set_defaults(func=cmd_pause_or_resume, command="pause")
    resume = sub.add_parser("resume", help="resume a training run's paused job")
    resume.add_argument("run_id")
    resume.set_defaults(func=cmd_pause_or_resume, command="resume")
    watch = sub.add_parser("watch", help="follow a run live (state, step, loss) until it ends")
    watch.add_argument("run_id")
    watch.add_argument("--every", type=float, default=5.0, help="seconds between looks (default 5)")
    watch.add_argument("--api", metavar="URL", help="follow over HTTP: the app's base URL (.../api), long poll")
    watch.add_argument("--key", help="function key for --api (default: $FUNCTION_KEY)")
    watch.set_defaults(func=cmd_watch)

    for p in (drop, runs, status, cleanup, promote, rollback, cancel, redeploy, pause, resume, watch):
        p.add_argument("--settings", help="local.settings.json to read settings from")

    from shared.costs_cli import add_costs_command
    from shared.profiles_cli import add_profile_commands

    add_profile_commands(sub, [])
    add_costs_command(sub)


def load_env(path: str | None) -> dict[str, str]:
    """os.environ plus the Values of a local.settings.json (the environment wins, as with func)."""
    env = dict(os.environ)
    candidate = (
        path or os.environ.get("FT_SETTINGS") or next((c for c in SETTINGS_CANDIDATES if Path(c).is_file()), None)
    )
    if candidate:
        try:
            values = json.loads(Path(candidate).read_text(encoding="utf-8-sig")).get("Values", {})
        except OSError as exc:
            raise CommandError(f"cannot read settings file {candidate}: {exc.strerror}") from None
        except (json.JSONDecodeError, AttributeError) as exc:
            raise CommandError(f"settings file {candidate} is not a local.settings.json ({exc})") from None
        for key, value in values.items():
            env.setdefault(key, str(value))
    return env


def services_for(args: argparse.Namespace) -> Services:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from pydantic import ValidationError

    from shared.connections import ConnectionSettingError

    env = load_env(getattr(args, "settings", None))
    try:
        services = Services.from_settings(settings_from_env(env), env=env)
    except (ValidationError, ConnectionSettingError, ValueError) as exc:
        raise CommandError(f"unusable settings: {exc}") from None
    endpoint = redact_url(services.blobs.url)
    try:  # one quick try first: a storage account out of reach fails in seconds, not after a minute of retries
        services.blobs.get_container_client(services.settings.runs_container).exists(
            retry_total=0, connection_timeout=5, read_timeout=10
        )
        services.ensure_storage()
    except (ServiceRequestError, ServiceResponseError) as exc:
        reason = str(exc).rsplit(":", 1)[-1].strip() or type(exc).__name__
        raise CommandError(
            f"cannot reach blob storage at {endpoint} ({reason}). Is the local stack running (make dev), or does "
            "--settings point at the right account?"
        ) from None
    except (ClientAuthenticationError, HttpResponseError) as exc:
        code = getattr(exc, "error_code", None) or getattr(exc, "status_code", None) or type(exc).__name__
        raise CommandError(f"blob storage at {endpoint} refused the request ({code}): check the settings") from None
    return services


def cmd_drop(args: argparse.Namespace) -> int:
    metadata: dict[str, str] = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--meta {item!r}: expected KEY=VALUE")
        metadata[key.strip()] = value.strip()
    if args.profile:
        metadata["profile"] = args.profile
    for path in (args.file, args.validation):
        if path and not Path(path).is_file():
            raise CommandError(f"{path}: {'is a folder' if Path(path).is_dir() else 'no such file'}")
    try:
        check_submission(args.name or Path(args.file).name, metadata)  # before connecting to anything
    except SubmissionError as exc:
        raise CommandError(str(exc)) from None
    services = services_for(args)
    try:
        blob_name, run_id = drop_file(
            services, args.file, name=args.name, validation_path=args.validation, metadata=metadata
        )
    except AlreadySubmitted as exc:
        # Runs start from new blob versions; `drop` refuses to overwrite so that a typo cannot replace a file
        # another run was started from. Uploading a new version on purpose (any other tool) starts a new run.
        raise CommandError(
            f"{exc.blob_name} is already in the drop container (run {exc.run_id}). drop never overwrites: use "
            "--name for a new name (uploading a new version with another tool also starts a new run)",
            exit_code=1,
        ) from None
    except SubmissionError as exc:
        raise CommandError(str(exc)) from None
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
    queued = {}
    if any(s.state == RunState.WAITING.value for s in summaries):
        from shared.admission import places

        queued = places(services)  # one read of the admission ledger for every waiting run
    header = ("RUN", "STATE", "AGE", "BLOB", "PROFILE", "EXAMPLES", "JOB", "OUTCOME")
    rows = [
        (
            s.id,
            f"{s.state} (not serving)" if s.serving is False else s.state,
            _age(s.created_at),
            s.blob if len(s.blob) <= 40 else f"{s.blob[:18]}...{s.blob[-19:]}",
            s.profile or "-",
            str(s.examples) if s.examples is not None else "-",
            s.job_status or "-",
            (textwrap.shorten(f"position {queued[s.id].position} of {queued[s.id].of}: {queued[s.id].reason}", 90,
                              placeholder=" ...") if s.id in queued else outcome(s)),
        )
        for s in summaries
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + str(row[-1]))
    return 0


def outcome(s: RunSummary, width: int = 90) -> str:
    """The last column of the runs table: what the run came to, in its state's terms (errors cut at a word)."""
    if s.error is not None:
        return textwrap.shorten(f"{s.error.code}: {s.error.message}", width, placeholder=" ...")
    if s.waiting:
        return textwrap.shorten(f"waiting, {s.waiting}", width, placeholder=" ...")
    if s.state == RunState.DEPLOYED.value and s.deployment:
        if s.serving is False or (s.deployment_state or "").lower() == "deleted":
            why = f": {s.deployment_deleted_reason}" if s.deployment_deleted_reason else ""
            return textwrap.shorten(f"deployment {s.deployment} deleted{why} (model {s.fine_tuned_model} stays)",
                                    width, placeholder=" ...")
        return f"deployed as {s.deployment}"
    if s.state == RunState.DEPLOYING.value and s.deployment:
        return f"deploying {s.deployment} ({s.deployment_state or 'starting'})"
    return s.fine_tuned_model or s.last_note


def cmd_cleanup(args: argparse.Namespace) -> int:
    from shared.cleanup import cleanup_run

    if args.policy:
        return _cleanup_policy(args)
    if args.dry_run:
        raise CommandError("--dry-run goes with --policy")
    if not args.run_id:
        raise CommandError("cleanup needs a RUN_ID, or --policy")
    services = services_for(args)
    try:
        done = cleanup_run(services, args.run_id, deployment=not args.keep_deployment, files=not args.keep_files)
    except RunNotFound:
        raise CommandError(f"no run {args.run_id!r}", exit_code=1) from None
    except InvalidName as exc:
        raise CommandError(str(exc)) from None
    print("\n".join(done) if done else "nothing to clean up")
    return 0


def _cleanup_policy(args: argparse.Namespace) -> int:
    """`cleanup --policy [--dry-run] [RUN_ID]`: the retention pass the timer runs, as a table."""
    from shared.retention import retention_pass

    services = services_for(args)
    if args.run_id:
        _load_run(services, args.run_id)
    report = retention_pass(services, dry_run=args.dry_run, run_ids=[args.run_id] if args.run_id else None)
    rows = [{"run": row.action.run_id, "object": f"{row.action.target} {row.action.id}", "reason": row.action.reason,
             "action": row.outcome, **({"error": row.error} if row.error else {})} for row in report.rows]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    backfill = _backfill_line(report.backfill)
    if not rows:
        print(f"retention: nothing to do ({report.runs} ended runs looked at)")
        if backfill:
            print(backfill)
        return 0
    header = {"run": "RUN", "object": "OBJECT", "reason": "REASON", "action": "ACTION"}
    widths = {k: max(len(str(r[k])) for r in [header, *rows]) for k in ("run", "object", "action")}
    for r in [header, *rows]:
        print("  ".join(str(r[k]).ljust(widths[k]) for k in ("run", "object", "action")) + "  " + str(r["reason"]))
    verb = "would change" if args.dry_run else "changed"
    print(f"{len(rows)} row(s) over {report.runs} ended run(s); {verb}: {report.counts()}")
    if backfill:
        print(backfill)
    return 0


def _backfill_line(page: Backfill | None) -> str:
    """The pass's page of the sweep for records written before the retention tags (nothing once it is done)."""
    if page is None or (page.done and not page.listed):
        return ""
    if page.dry_run:
        done = f"would re-tag {len(page.found)}"
    else:
        done = f"re-tagged {page.retagged}" + (f", {page.raced} written meanwhile" if page.raced else "")
    rest = ("that was its last page" if page.done else "it goes on from there next pass") if not page.dry_run \
        else ("the last page" if page.done else "more pages follow")
    unreadable = f", {len(page.unreadable)} unreadable" if page.unreadable else ""
    return (f"index backfill: {page.listed} blobs listed, {len(page.found)} records without the retention tags "
            f"({done}{unreadable}); {rest}")


def cmd_promote(args: argparse.Namespace) -> int:
    from shared.promote import PromotionError, promote

    services = services_for(args)
    try:
        done = promote(services, args.run_id, args.deployment)
    except RunNotFound:
        raise CommandError(f"no run {args.run_id!r}", exit_code=1) from None
    except (InvalidName, PromotionError) as exc:
        raise CommandError(str(exc), exit_code=1) from None
    print(f"{done['deployment']} serves {done['model']} (was {done['previous_model'] or 'not deployed'})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from shared.promote import PromotionError, rollback

    services = services_for(args)
    try:
        done = rollback(services, args.deployment)
    except PromotionError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    print(f"{done['deployment']} serves {done['model']} again (was {done['previous_model']})")
    return 0


def _load_run(services: Services, run_id: str) -> RunRecord:
    try:
        return services.store.get(run_id)
    except RunNotFound:
        raise CommandError(f"no run {run_id!r}", exit_code=1) from None
    except InvalidName as exc:
        raise CommandError(str(exc)) from None


def cmd_cancel(args: argparse.Namespace) -> int:
    from shared.run_commands import cancel

    services = services_for(args)
    _load_run(services, args.run_id)
    print(cancel(services, args.run_id, by="cli").message)
    return 0


def cmd_pause_or_resume(args: argparse.Namespace) -> int:
    from shared.run_commands import CommandRefused, pause, resume

    services = services_for(args)
    _load_run(services, args.run_id)
    try:
        print((pause if args.command == "pause" else resume)(services, args.run_id, by="cli").message)
    except CommandRefused as exc:
        raise CommandError(str(exc), exit_code=1) from None
    return 0


def cmd_redeploy(args: argparse.Namespace) -> int:
    from shared.run_commands import CommandRefused, redeploy

    services = services_for(args)
    _load_run(services, args.run_id)
    try:
        print(redeploy(services, args.run_id, by="cli").message)
    except CommandRefused as exc:
        raise CommandError(str(exc), exit_code=1) from None
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import time

    from shared.watch import watch_line

    if args.api:
        return _watch_http(args)
    services = services_for(args)
    last = ""
    while True:
        r = _load_run(services, args.run_id)
        line = watch_line(r)
        if line != last:
            print(f"[{datetime.now(UTC):%H:%M:%S}] {line}", flush=True)
            last = line
        if r.terminal:
            return 0 if r.state in (RunState.DEPLOYED, RunState.TRAINED) else 1
        time.sleep(args.every)


def _watch_http(args: argparse.Namespace) -> int:
    """`watch --api URL`: the app's long poll (GET /api/runs/{id}/watch), no storage access needed."""
    import httpx

    from shared.watch import follow

    key = args.key or os.environ.get("FUNCTION_KEY")
    try:
        last = follow(args.api, args.run_id, key=key,
                      emit=lambda line: print(f"[{datetime.now(UTC):%H:%M:%S}] {line}", flush=True))
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        raise CommandError(f"{args.api}: {code} {exc.response.text[:200]}", exit_code=1 if code == 404 else 2) from None
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {args.api} ({type(exc).__name__})") from None
    return 0 if last["state"] in (RunState.DEPLOYED.value, RunState.TRAINED.value) else 1


def waiting_line(services: Services, r: RunRecord) -> str:
    """Where a waiting run stands in the admission queue, and why (the ledger's live view)."""
    from shared.admission import place

    since = r.waiting.since if r.waiting else r.entered(RunState.WAITING)
    waited = f" since {since:%Y-%m-%d %H:%M:%S} ({_age(since)})" if since else ""
    found = place(services, r.id)
    if found is None:
        return f"admitted, importing at the next tick{waited}"
    return f"position {found.position} of {found.of}{waited}: {found.reason}"


def detail_lines(services: Services, r: RunRecord) -> list[str]:
    """`status`: the split, the epochs, the metrics and the gate's checks."""
    out: list[str] = []
    files = r.files
    if files.training.blob is not None:
        trained = f"{r.cost.trained_examples} examples, " if r.cost is not None else ""
        valid = str(files.validation.blob) if files.validation.blob is not None else "none"
        test = str(files.test.blob) if files.test.blob is not None else "none"
        out.append(f"  split       training {trained}{files.training.blob}; validation {valid}; test {test}")
    if r.spec is not None:
        asked = r.spec.hyperparameters.n_epochs
        epochs = asked or (r.cost.n_epochs if r.cost is not None else None)
        if epochs is not None:
            out.append(f"  epochs      {epochs} ({'set in the spec' if asked else 'the service default rule'})")
    m = r.metrics
    if m is not None:
        best = (f", best full valid loss {m.best_full_valid_loss} at step {m.best_full_valid_loss_step}"
                if m.best_full_valid_loss is not None else
                f", best valid loss {m.best_valid_loss} at step {m.best_valid_loss_step}"
                if m.best_valid_loss is not None else "")
        accuracy = (f", valid token accuracy {m.final_valid_token_accuracy}"
                    if m.final_valid_token_accuracy is not None else "")
        out.append(f"  metrics     {m.steps} steps, final train loss {m.final_train_loss}, final valid loss "
                   f"{m.final_full_valid_loss if m.final_full_valid_loss is not None else m.final_valid_loss}"
                   f"{best}{accuracy}, overfitting={m.overfitting}")
        if m.reward is not None:  # reinforcement fine-tuning
            w = m.reward
            out.append(f"  reward      train {w.first_train_reward_mean} -> {w.final_train_reward_mean}, valid "
                       f"{w.final_valid_reward_mean} (best {w.best_valid_reward_mean} at step "
                       f"{w.best_valid_reward_mean_step}), parse errors {w.parse_errors}, reasoning tokens "
                       f"{w.final_reasoning_tokens_mean}")
    if r.gate is not None:
        out.append(f"  gate        {'passed' if r.gate.passed else 'FAILED'} ({len(r.gate.checks)} checks)")
        for c in r.gate.checks:
            out.append(f"    {'ok  ' if c.passed else 'FAIL'}      {c.message}")
    return out


def artifact_lines(services: Services, r: RunRecord) -> list[str]:
    """`status`: every blob beside the record (one listing) and where the HTTP API serves it."""
    from shared.runstore import run_folder

    folder = run_folder(r.id)
    names = sorted(str(b.name)[len(folder):] for b in services.store.container.list_blobs(name_starts_with=folder))
    container = services.settings.runs_container
    out = [f"  artifacts   {container}/{folder}" + ("" if names else " (none left)")]
    out += [f"              {name}" + (f"   GET /api/runs/{r.id}/{name}" if name != "run.json" else "   GET /api/runs/"
                                       f"{r.id}") for name in names]
    return out


def cmd_status(args: argparse.Namespace) -> int:
    services = services_for(args)
    try:
        r = services.store.get(args.run_id)
    except RunNotFound:
        raise CommandError(f"no run {args.run_id!r}", exit_code=1) from None
    except InvalidName as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(r.model_dump_json(indent=2))
        return 0
    print(f"run {r.id}: {r.state.value}")
    print(f"  source      {r.source.container}/{r.source.blob_name} (sha256 {(r.source.sha256 or '-')[:16]})")
    if r.state == RunState.WAITING:
        print(f"  waiting     {waiting_line(services, r)}")
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
    if r.cost is not None:
        c = r.cost
        estimated = f"{c.estimated_training:.2f} {c.currency}" if c.estimated_training is not None else "no price"
        actual = f", actual {c.actual_training:.2f} {c.currency}" if c.actual_training is not None else ""
        hosting = f"; hosting {c.hosting_per_hour:.2f} {c.currency}/hour" if c.hosting_per_hour else ""
        print(f"  cost        estimated {estimated} ({c.billed_tokens} tokens = {c.trained_examples} examples x "
              f"{c.n_epochs} epochs){actual}{hosting}")
    for line in detail_lines(services, r):
        print(line)
    if r.job.id:
        metrics = r.job.latest_metrics
        loss = f", step {metrics.get('step')} train_loss {metrics.get('train_loss')}" if metrics else ""
        print(f"  job         {r.job.id}: {r.job.status}{loss}")
    if r.job.fine_tuned_model:
        print(f"  model out   {r.job.fine_tuned_model} ({r.job.trained_tokens} tokens)")
    if r.deployment.name:
        d = r.deployment
        print(f"  deployment  {d.name}: {d.provisioning_state or '-'} ({d.sku}, capacity {d.capacity})")
        if d.deleted_at is not None:
            print(f"              deleted {d.deleted_at:%Y-%m-%d %H:%M:%S}: {d.deleted_reason}")
        if d.smoke_test:
            answer = (d.smoke_test.answer or "")[:80]
            print(f"  smoke test  {d.smoke_test.status} in {d.smoke_test.latency_ms} ms: {answer}")
    if r.evaluation:
        e = r.evaluation
        verdict = {True: "PASSED", False: "REFUSED", None: "-"}[e.passed]
        print(f"  evaluation  {e.status}, {verdict}: {e.test_examples} test examples, graders {', '.join(e.graders)}")
        for label, side in (("baseline", e.baseline), ("candidate", e.candidate)):
            if side.deployment:
                score = "-" if side.score is None else f"{side.score:.3f}"
                rate = "-" if side.pass_rate is None else f"{side.pass_rate:.0%}"
                print(f"    {label:<10}{side.deployment} ({side.model}): score {score}, pass rate {rate}")
        if e.improvement is not None and e.ci95:
            print(f"    improvement {e.improvement:+.3f} (95% CI [{e.ci95[0]:+.3f}, {e.ci95[1]:+.3f}])")
        for reason in e.reasons:
            print(f"    reason    {reason}")
    if r.promotion:
        p = r.promotion
        print(f"  promoted    {p.deployment} serves {p.model or '-'} (was {p.previous_model or 'not deployed'})")
    for kept in r.retention:
        when = f"{(kept.removed_at or kept.at):%Y-%m-%d %H:%M}"
        print(f"  retention   {kept.action} {kept.target} {kept.id} ({when}): {kept.reason}")
    for line in artifact_lines(services, r):
        print(line)
    for w in r.warnings:
        print(f"  warning     {w.message}" + (f" (x{w.count})" if w.count > 1 else ""))
    if r.last_attempt and not r.terminal:
        print(f"  last try    {r.last_attempt.code}: {r.last_attempt.message}")
    if r.error:
        print(f"  error       {r.error.code}: {r.error.message}")
    print("  history")
    for h in r.history:
        print(f"    {h.at:%Y-%m-%d %H:%M:%S}  {h.state.value:<10} {h.note}")
    return 0
