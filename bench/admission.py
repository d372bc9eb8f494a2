"""Admission benchmark: 200 valid drops at once on the local stack, with the emulator's real limits.

Azurite + the emulator at its defaults (50 files / 1 GB, 1 running + 20 queued jobs, 100 jobs) and a shortened
time model (`--time-scale`); the handlers run in-process: the blob trigger for every drop at once (a thread
pool), then timer ticks and the deploy queue until every run has ended. Runs are `deploy=false` (the
5-deployment cap is another limit; the deploy path is the same after `measuring`). Prints one JSON line:

- `states`: where the runs ended (all `trained` is right), `limit_errors`: 429 answers in the emulator's log;
- `peak`: the most files, bytes and outstanding jobs the emulator saw at once (from GET /_emulator/limits);
- `first_tick_seconds` (with every run waiting or importing), `tick_seconds` (median, max) and
  `job_gets_per_training_run` over the drain, `drain_seconds` (first drop to the last run ended).

The 100-jobs-per-resource limit is lifted for the run (`--max-total-jobs`): 200 runs need 200 jobs, and
deleting old jobs is the operator's decision, not the pipeline's (admission would wait, as it should).

usage: python -m bench.admission [--drops 200] [--time-scale 0.02] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from devstack import REPO, Stack, deliver_deploy_messages
from shared.advance import tick
from shared.ingest import handle_new_blob
from shared.runs import RunState
from shared.services import Services
from shared.settings import settings_from_env

OUT = REPO / "bench-output"
_JOB_GET = re.compile(r" GET /openai/fine_tuning/jobs/ftjob-[0-9a-f]+ ")


def _drop_file(i: int, n: int = 24) -> bytes:
    lines = []
    for k in range(n):
        lines.append(json.dumps({"messages": [
            {"role": "system", "content": "You answer questions about team tickets."},
            {"role": "user", "content": f"Run {i}, ticket {k}: what is its status?"},
            {"role": "assistant", "content": f"Ticket {k} of run {i} is open and assigned."},
        ]}))
    return ("\n".join(lines) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=200)
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=8, help="blob-trigger invocations at once")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    emulator_args = ("--time-scale", str(args.time_scale), "--max-total-jobs", str(max(100, args.drops + 10)))
    with Stack(OUT / "admission-stack", with_devhost=False, emulator_args=emulator_args) as stack:
        env = {**stack.settings_env, "RUNS_CONTAINER": "bench-admission", "RESOURCE_MAX_JOBS": str(args.drops + 10)}
        services = Services.from_settings(settings_from_env(env), env=env)
        services.ensure_storage()
        admin = httpx.Client(base_url=f"{stack.emulator_url}/_emulator/", timeout=30)
        log = Path(stack.workdir) / "emulator.log"
        drop = services.settings.drop_container
        print(f"dropping {args.drops} files ...", flush=True)
        started = time.perf_counter()
        names = [f"team/run-{i:04d}.jsonl" for i in range(args.drops)]
        for i, name in enumerate(names):
            services.blobs.get_blob_client(drop, name).upload_blob(
                _drop_file(i), overwrite=True, metadata={"deploy": "false"})

        def event(name: str) -> str:
            record = handle_new_blob(services, services.blobs.get_blob_client(drop, name))
            assert record is not None
            return record.id

        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            run_ids = list(pool.map(event, names))
        triggered = time.perf_counter()
        after_trigger = Counter(services.store.get(r).state.value for r in run_ids)
        print(f"after the blob trigger: {dict(after_trigger)} ({triggered - started:.1f} s)", flush=True)

        ticks: list[dict[str, float]] = []
        pending = set(run_ids)
        deadline = time.monotonic() + args.timeout
        while pending and time.monotonic() < deadline:
            before = log.read_text().count("\n")
            training = sum(1 for r in services.store.active_runs() if r.state == RunState.TRAINING.value)
            report = tick(services)
            deliver_deploy_messages(services)
            lines = log.read_text().splitlines()[before:]
            gets = sum(1 for line in lines if _JOB_GET.search(line))
            ticks.append({"seconds": report.seconds, "runs": report.runs, "gets": gets, "training": training})
            if len(ticks) % 20 == 1:
                print(f"tick {len(ticks)}: {report.as_dict()}", flush=True)
            pending = {r for r in pending if not services.store.get(r).terminal}
        drained = time.perf_counter()
        for _ in range(3):  # the last runs' retention deletions
            tick(services)
        limits = admin.get("limits").json()
        text = log.read_text()
        final_states = Counter(services.store.get(r).state.value for r in run_ids)

    figures = {
        "drops": args.drops,
        "time_scale": args.time_scale,
        "after_blob_trigger": dict(after_trigger),
        "states": dict(final_states),
        "limit_errors": len(re.findall(r" 429 ", text)),
        "peak": {k: v["peak"] for k, v in limits.items()},
        "limits": {k: v["limit"] for k, v in limits.items()},
        "files_left": limits["files"]["used"],
        "ticks": len(ticks),
        "first_tick_seconds": round(ticks[0]["seconds"], 3) if ticks else None,
        "first_tick_runs": ticks[0]["runs"] if ticks else 0,
        "tick_seconds_median": round(statistics.median(t["seconds"] for t in ticks), 3) if ticks else None,
        "tick_seconds_max": round(max(t["seconds"] for t in ticks), 3) if ticks else None,
        "job_gets_per_training_run": round(sum(t["gets"] for t in ticks) / max(1, sum(t["training"] for t in ticks)),
                                           3),
        "drain_seconds": round(drained - started, 1),
    }
    print(json.dumps(figures), flush=True)
    ok = (figures["states"] == {RunState.TRAINED.value: args.drops} and figures["limit_errors"] == 0
          and figures["peak"]["outstanding_jobs"] <= 21 and figures["peak"]["files"] <= 50)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
