"""Side-by-side benchmark of the validator against the shared baseline scripts (../shared/bench).

    python -m bench.validate [--size-mb 64] [--repeat 3] [--big]

Generates a chat file with gen_chat.py into bench-output/ (gitignored), then runs, in the same session and
on the same file, each as a subprocess under `/usr/bin/time -f "%e %M"`: baseline_loadall.py (the notebook
approach), limit_tokenize.py (tiktoken alone, one thread) and ours (`validate()` on a file stream).
Machines here are shared and noisy: runs are interleaved, the median of `--repeat` is kept, and only
ratios are meant to be compared. `--big` also validates a 511 MiB file (just under the limit) and checks
peak RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
OUT = REPO / "bench-output"
RSS_LIMIT_MB = 150


def _env() -> dict[str, str]:
    env = dict(os.environ)
    cache = REPO.parent / "shared" / "tiktoken"
    if cache.is_dir():
        env.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def generate(size_mb: int) -> Path:
    path = OUT / f"chat-{size_mb}mb.jsonl"
    if not path.exists() or path.stat().st_size < size_mb * 1024 * 1024:
        OUT.mkdir(exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        subprocess.run([sys.executable, str(SHARED_BENCH / "gen_chat.py"), str(path), str(size_mb)], check=True)
    return path


def timed(argv: list[str]) -> dict[str, float]:
    """Run under /usr/bin/time; wall seconds, peak RSS (MB) and the script's own JSON line."""
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *argv], capture_output=True, text=True, env=_env(), check=False
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{argv} failed: {proc.stderr[-2000:]}")
    wall, kb = proc.stderr.strip().splitlines()[-1].split()
    own = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall": float(wall), "rss_mb": int(kb) / 1024, **{k: float(v) for k, v in own.items()}}


def ours(path: str) -> None:
    """Subprocess entry: validate one file, print {examples, tokens, seconds} like the baseline scripts."""
    from shared.validation import validate

    t0 = time.perf_counter()
    with open(path, "rb") as f:
        report = validate(f)
    seconds = time.perf_counter() - t0
    tokens = report.tokens.total if report.tokens else 0
    print(
        json.dumps(
            {"examples": report.examples, "errors": report.error_count, "tokens": tokens, "seconds": round(seconds, 3)}
        )
    )


def run(size_mb: int, repeat: int) -> dict[str, dict[str, float]]:
    path = generate(size_mb)
    commands = {
        "baseline_loadall": [sys.executable, str(SHARED_BENCH / "baseline_loadall.py"), str(path)],
        "limit_tokenize": [sys.executable, str(SHARED_BENCH / "limit_tokenize.py"), str(path)],
        "ours": [sys.executable, "-m", "bench.validate", "--ours", str(path)],
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for i in range(repeat):
        for name, argv in commands.items():  # interleaved, so load spikes hit all three alike
            runs[name].append(timed(argv))
            print(
                f"  run {i + 1} {name:<17} {runs[name][-1]['wall']:6.2f} s wall, "
                f"{runs[name][-1]['seconds']:6.2f} s own, {runs[name][-1]['rss_mb']:6.0f} MB",
                flush=True,
            )
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    base, limit, us = med["baseline_loadall"], med["limit_tokenize"], med["ours"]
    print(f"\n{path.name} ({path.stat().st_size / 1e6:.0f} MB, {int(us['examples']):,} examples), median of {repeat}:")
    print(f"  {'':<17} {'wall s':>7} {'own s':>7} {'peak MB':>8}")
    for name, m in med.items():
        print(f"  {name:<17} {m['wall']:7.2f} {m['seconds']:7.2f} {m['rss_mb']:8.0f}")
    print(
        f"  speed vs baseline_loadall: {base['wall'] / us['wall']:.2f}x wall, "
        f"{base['seconds'] / us['seconds']:.2f}x own time (target >= 2x)"
    )
    print(
        f"  speed vs limit_tokenize:   {limit['wall'] / us['wall']:.2f}x wall, "
        f"{limit['seconds'] / us['seconds']:.2f}x own time (target >= 1x; its own time is tokenization only)"
    )
    print(f"  tokens: ours {int(us['tokens']):,}, baseline {int(base['tokens']):,} (same convention: equal)")
    return med


def big() -> None:
    path = generate(511)  # gen_chat overshoots by a line: 511 MiB stays under the 512 MiB limit
    m = timed([sys.executable, "-m", "bench.validate", "--ours", str(path)])
    verdict = "ok" if m["rss_mb"] <= RSS_LIMIT_MB else "OVER"
    print(
        f"\n{path.name}: {m['wall']:.2f} s wall, peak RSS {m['rss_mb']:.0f} MB "
        f"(limit {RSS_LIMIT_MB} MB: {verdict}), {int(m['examples']):,} examples"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also check peak RSS on a 512 MB file")
    parser.add_argument("--ours", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ours:
        ours(args.ours)
        return 0
    run(args.size_mb, args.repeat)
    if args.big:
        big()
    return 0


if __name__ == "__main__":
    sys.exit(main())
