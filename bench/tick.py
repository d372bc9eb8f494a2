"""Timer-tick benchmark: one tick over 1,000 active runs while the emulator adds 50 ms to every call.

Goal (issue): <= 5 s per tick and exactly 1 job GET per active run. Also: drop-to-job-created latency for a
10 MB file. Starts its own Azurite + emulator (no devhost: the handlers are called in-process) and prints
one JSON line of figures at the end.

usage: python -m bench.tick [--runs 1000] [--latency-ms 50] [--ticks 3] [--file-mb 10] [--distinct-jobs N]

`--distinct-jobs N` makes N queued jobs and gives each run one of them (round robin): the tick still sends one GET
per run, but the emulator holds N jobs, not one per run. The emulator works out every job's queue wait from all
its jobs on each read (emulator/limits.py), so 10,000 jobs would measure the emulator, not the tick.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from devstack import REPO, Stack
from shared.advance import tick
from shared.ingest import handle_new_blob
from shared.runs import RunJob, RunRecord, RunSource, RunState
from shared.services import Services
from shared.settings import settings_from_env

GEN = REPO.parent / "shared" / "bench" / "gen_chat.py"
OUT = REPO / "bench-output"
_JOB_GET = re.compile(r" GET /openai/fine_tuning/jobs/(ftjob-[0-9a-f]+) ")


def _stuck_training_file(n: int = 12) -> bytes:
    lines = []
    for i in range(n):
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"Question {i}? EMULATOR_SCENARIO:stuck_queued"},
            {"role": "assistant", "content": f"Answer {i}."},
        ]}))
    return ("\n".join(lines) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=3)
    parser.add_argument("--file-mb", type=float, default=10.0)
    parser.add_argument("--distinct-jobs", type=int, default=0, help="jobs made (0: one per run)")
    parser.add_argument("--surface", choices=["versioned", "v1"], default="versioned",
                        help="data-plane surface (v1: the file is uploaded by the app instead of imported)")
    parser.add_argument("--part-mb", type=float, default=64.0, help="v1: AZURE_OPENAI_UPLOAD_PART_BYTES in MiB")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    unlimited = ("--max-running-jobs", "0", "--max-queued-jobs", str(args.runs + 10), "--max-total-jobs",
                 str(args.runs + 10))  # this benchmark measures the tick, not the resource's job limits
    with Stack(OUT / "tick-stack", with_devhost=False, emulator_args=unlimited) as stack:
        env = {**stack.settings_env, "RUNS_CONTAINER": "bench-runs", "AZURE_OPENAI_API_SURFACE": args.surface,
               "AZURE_OPENAI_UPLOAD_PART_BYTES": str(int(args.part_mb * 1024 * 1024))}
        services = Services.from_settings(settings_from_env(env), env=env)
        services.ensure_storage()
        admin = httpx.Client(base_url=f"{stack.emulator_url}/_emulator/", timeout=30)

        print(f"creating {args.runs} queued jobs and their run records ...", flush=True)
        training = services.aoai.files.upload("bench.jsonl", _stuck_training_file())
        while services.aoai.files.get(training.id).status != "processed":
            time.sleep(0.2)
        distinct = args.distinct_jobs or args.runs
        jobs = [services.aoai.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=training.id)
                for _ in range(distinct)]

        def make(i: int) -> None:
            job = jobs[i % distinct]
            record = RunRecord.new(
                f"bench-{i:06d}", RunSource(container="training-data", blob_name=f"bench-{i}.jsonl", etag=str(i))
            )
            record.state = RunState.TRAINING
            record.job = RunJob(id=job.id, status=job.status)
            services.store.create(record)

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(make, range(args.runs)))

        admin.post("faults", json={"method": "*", "path": "/openai/*", "mode": "latency",
                                   "latency_ms": args.latency_ms})
        log = Path(stack.workdir) / "emulator.log"
        ticks = []
        for _ in range(args.ticks):
            before = log.read_text().count("\n")
            report = tick(services)
            time.sleep(0.2)  # let the emulator flush its request log
            lines = log.read_text().splitlines()[before:]
            gets = sum(1 for line in lines if _JOB_GET.search(line))
            ticks.append({"seconds": round(report.seconds, 3), "active_runs": report.runs,
                          "job_gets": gets, "job_gets_per_run": round(gets / max(1, report.runs), 3)})
            print(f"tick: {ticks[-1]}", flush=True)
        admin.delete("faults")

        print(f"drop-to-job-created for a {args.file_mb:g} MB file ...", flush=True)
        big = OUT / f"chat-{args.file_mb:g}mb.jsonl"
        if not big.exists():
            subprocess.run([sys.executable, str(GEN), str(big), str(args.file_mb)], check=True)
        started = time.perf_counter()
        blob = services.blobs.get_blob_client(services.settings.drop_container, big.name)
        with big.open("rb") as fh:
            blob.upload_blob(fh, overwrite=True, metadata={"validation_split": "0.05"})
        uploaded = time.perf_counter()
        ingested_record = handle_new_blob(services, blob)
        assert ingested_record is not None, "the bench file was not turned into a run"
        record = ingested_record
        ingested = time.perf_counter()
        while services.store.get(record.id).job.id is None:
            if services.store.get(record.id).terminal:
                raise SystemExit(f"bench run ended early: {services.store.get(record.id).error}")
            tick(services)
            time.sleep(0.2)
        created = time.perf_counter()

    figures = {
        "runs": args.runs,
        "distinct_jobs": args.distinct_jobs or args.runs,
        "latency_ms": args.latency_ms,
        "tick_seconds": [t["seconds"] for t in ticks],
        "job_gets_per_run": [t["job_gets_per_run"] for t in ticks],
        "drop_mb": args.file_mb,
        "surface": args.surface,
        "part_mb": args.part_mb if args.surface == "v1" else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "upload_seconds": round(uploaded - started, 2),
        "validate_split_import_seconds": round(ingested - uploaded, 2),
        "drop_to_job_created_seconds": round(created - uploaded, 2),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
