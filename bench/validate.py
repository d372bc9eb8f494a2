"""Side-by-side benchmark of the validator against the shared baseline scripts (../shared/bench).

    python -m bench.validate [--size-mb 64] [--repeat 3] [--no-memory] [--no-cold]

One run prints everything, each figure beside what it is compared with:
- throughput, on the default file (every system prompt different) and the realistic one (`gen_chat.py
  --system-prompts 3`: one of 3 long system prompts per example), on 2 cores and pinned to 1 core
  (`taskset -c 0`): baseline_loadall.py (the notebook approach), limit_tokenize.py (tiktoken alone, one
  thread, over strings extracted beforehand) and ours (`python -m shared.cli validate --json`), each a
  subprocess under `/usr/bin/time`, interleaved, median of `--repeat`: wall, CPU (user + sys), peak RSS,
  token totals (which must be identical);
- memory: on a 511 MiB default file and on 511 MiB of tiny lines (about 6M examples), the largest PSS of ours
  and its counting process together (counting_process.py; PSS counts a page they share once), sampled;
- cold starts: `import function_app` (wall, and `python -X importtime` by top-level module) and
  `python -m shared.cli validate` of a 10-line file.
Files go to bench-output/ (gitignored). Machines here are shared and noisy: only ratios within one run are
meant to be compared, never absolute times, and nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
OUT = REPO / "bench-output"
RSS_LIMIT_MB = 150
MIB = 1024 * 1024

# The goals, for the verdict column (ratios against the baseline in the same run).
GOALS = {
    "default": {"wall_x": 2.5, "cpu_ratio": 0.8},
    "realistic": {"wall_x": 4.0, "cpu_ratio": 0.35},
}
CLI_GOAL_S = 0.6
IMPORT_GOAL_S = 1.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    cache = REPO.parent / "shared" / "tiktoken"
    if cache.is_dir():
        env.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # cold starts are measured with bytecode, as deployed
    return env


def chat_file(size_mb: int, *, system_prompts: int = 0) -> Path:
    suffix = f"-sp{system_prompts}" if system_prompts else ""
    path = OUT / f"chat-{size_mb}mb{suffix}.jsonl"
    if not path.exists() or path.stat().st_size < size_mb * MIB:
        OUT.mkdir(exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        extra = ["--system-prompts", str(system_prompts)] if system_prompts else []
        subprocess.run([sys.executable, str(SHARED_BENCH / "gen_chat.py"), str(path), str(size_mb), *extra], check=True)
    return path


def tiny_file(size_mb: int) -> Path:
    """`size_mb` MiB of the smallest valid chat lines, all different (the worst case for memory)."""
    path = OUT / f"tiny-{size_mb}mb.jsonl"
    target = size_mb * MIB
    if not path.exists() or path.stat().st_size < target - 200:
        OUT.mkdir(exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        line = b'{"messages":[{"role":"user","content":"q %d?"},{"role":"assistant","content":"ok"}]}\n'
        written, i = 0, 0
        with open(path, "wb") as f:
            while True:
                block = b"".join(line % j for j in range(i, i + 10_000))
                if written + len(block) > target:
                    for j in range(i, i + 10_000):
                        one = line % j
                        if written + len(one) > target:
                            return path
                        f.write(one)
                        written += len(one)
                f.write(block)
                written += len(block)
                i += 10_000
    return path


def ten_lines() -> Path:
    path = OUT / "ten.jsonl"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        with open(chat_file(64), "rb") as f:
            path.write_bytes(b"".join(next(f) for _ in range(10)))
    return path


def timed(argv: Sequence[str], *, core: int | None = None, figures_out: bool = True) -> dict[str, float]:
    """Run under /usr/bin/time (pinned to one core with taskset when `core` is given): wall s, CPU s
    (user + sys), peak RSS MB, and (`figures_out`) the figures of the JSON object the command printed last."""
    prefix = ["taskset", "-c", str(core)] if core is not None else []
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %U %S %M", *prefix, *argv],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    wall, user, sys_, kb = next(ln for ln in reversed(proc.stderr.splitlines()) if ln.startswith("TIME ")).split()[1:]
    figures: dict[str, float] = {"wall": float(wall), "cpu": float(user) + float(sys_), "rss_mb": int(kb) / 1024}
    out = proc.stdout.strip()
    if figures_out:
        start = out.rfind("\n{") + 1 if not out.startswith("{") else 0
        report = json.loads(out[start:])
        if "tokens" in report and isinstance(report["tokens"], dict):  # our report
            figures["tokens"] = float(report["tokens"]["total"])
            figures["examples"] = float(report["examples"])
        else:
            figures.update({k: float(v) for k, v in report.items()})
    return figures


def _commands(path: Path) -> dict[str, list[str]]:
    return {
        "baseline_loadall": [sys.executable, str(SHARED_BENCH / "baseline_loadall.py"), str(path)],
        "limit_tokenize": [sys.executable, str(SHARED_BENCH / "limit_tokenize.py"), str(path)],
        "ours": [sys.executable, "-m", "shared.cli", "validate", "--json", str(path)],
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of every figure; `load_min` / `load_max`: the load averages seen while they were taken."""
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    med["load_min"], med["load_max"] = min(r["load"] for r in runs), max(r["load"] for r in runs)
    return med


def throughput(kind: str, path: Path, repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    """Interleaved runs of the three commands, on 2 cores and pinned to 1: medians per setting."""
    commands = _commands(path)
    settings = {"2 cores": None, "1 core": 0}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {s: {n: [] for n in commands} for s in settings}
    for i in range(repeat):
        for setting, core in settings.items():
            for name, argv in commands.items():  # interleaved, so load spikes hit all alike
                m = timed(argv, core=core)
                m["load"] = os.getloadavg()[0]
                runs[setting][name].append(m)
                print(
                    f"  {kind:<9} run {i + 1} {setting:<7} {name:<17} {m['wall']:6.2f} s wall "
                    f"{m['cpu']:6.2f} s cpu {m['rss_mb']:5.0f} MB  (load average {m['load']:.1f})",
                    flush=True,
                )
    return {s: {n: _median(r) for n, r in by_name.items()} for s, by_name in runs.items()}


def print_throughput(kind: str, path: Path, med: dict[str, dict[str, dict[str, float]]], repeat: int) -> list[str]:
    two, one = med["2 cores"], med["1 core"]
    ours = two["ours"]
    loads = [m[k] for by_name in med.values() for m in by_name.values() for k in ("load_min", "load_max")]
    load = f"load average {min(loads):.1f}-{max(loads):.1f}"
    print(
        f"\n{kind} file: {path.name}, {path.stat().st_size / MIB:.0f} MiB, {int(ours['examples']):,} examples; "
        f"median of {repeat}; {load}"
    )
    print(f"  {'':<17} | {'2 cores':^31} | {'1 core (taskset -c 0)':^23}")
    print(f"  {'':<17} | {'wall s':>7} {'cpu s':>7} {'peak MB':>7} {'':>7} | {'wall s':>7} {'cpu s':>7} {'':>7}")
    for name in two:
        a, b = two[name], one[name]
        print(
            f"  {name:<17} | {a['wall']:7.2f} {a['cpu']:7.2f} {a['rss_mb']:7.0f} {'':>7} | "
            f"{b['wall']:7.2f} {b['cpu']:7.2f} {'':>7}"
        )
    base, floor = two["baseline_loadall"], two["limit_tokenize"]
    goal = GOALS[kind]
    wall_x = base["wall"] / ours["wall"]
    cpu_ratio = ours["cpu"] / base["cpu"]
    wall_x1 = one["baseline_loadall"]["wall"] / one["ours"]["wall"]
    cpu_ratio1 = one["ours"]["cpu"] / one["baseline_loadall"]["cpu"]
    same = int(ours["tokens"]) == int(base["tokens"])
    verdicts = [
        f"{kind}: ({load})",
        f"{kind}: wall {wall_x:.2f}x the baseline on 2 cores (goal >= {goal['wall_x']}x: "
        f"{'met' if wall_x >= goal['wall_x'] else 'NOT met'}), {wall_x1:.2f}x on 1 core",
        f"{kind}: CPU {cpu_ratio:.2f}x the baseline's on 2 cores (goal <= {goal['cpu_ratio']}x: "
        f"{'met' if cpu_ratio <= goal['cpu_ratio'] else 'NOT met'}), {cpu_ratio1:.2f}x on 1 core",
        f"{kind}: vs the tokenizer floor: wall {floor['wall'] / ours['wall']:.2f}x, "
        f"CPU {ours['cpu'] / floor['cpu']:.2f}x (its own tokenize-only time {floor['seconds']:.2f} s)",
        f"{kind}: tokens ours {int(ours['tokens']):,}, baseline {int(base['tokens']):,}, floor "
        f"{int(floor['tokens']):,} (content only, no per-message tokens): {'identical' if same else 'DIFFERENT'}",
    ]
    for v in verdicts:
        print("  " + v)
    return verdicts


def _pss_kb(pid: int) -> int:
    """Proportional set size (a shared page counted once over the processes sharing it), from smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    except OSError:
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def peak_memory(argv: Sequence[str], every: float = 0.02) -> dict[str, float]:
    """Run `argv`; sample the PSS of it and its children (the counting process) every `every` seconds: the
    largest sum seen, each one's largest, the largest RSS of one process (what /usr/bin/time prints), and the
    examples of the report it printed. Sampling is for this benchmark only: no test waits on a clock."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=_env())
        both = own = child = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            a, b = _pss_kb(proc.pid), sum(_pss_kb(c) for c in _children(proc.pid))
            both, own, child = max(both, a + b), max(own, a), max(child, b)
            time.sleep(every)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above, so Popen must not wait
        if proc.returncode not in (0, 1):  # as `timed`: 1 is an invalid file, anything else a failure
            err.seek(0)
            raise RuntimeError(f"{argv} failed ({proc.returncode}): {err.read()[-2000:].decode(errors='replace')}")
        out.seek(0)
        report = json.loads(out.read())
    return {
        "pss_mb": both / 1024,
        "own_pss_mb": own / 1024,
        "child_pss_mb": child / 1024,
        "rss_mb": usage.ru_maxrss / 1024,
        "examples": float(report["examples"]),
    }


def memory(verdicts: list[str]) -> None:
    print(
        "\nmemory: ours (`python -m shared.cli validate --json`) on files near the 512 MiB limit; on 2+ cores it "
        "forks a counting process, so the figure is the largest PSS of both together (sampled every 20 ms)"
    )
    for label, path in (("default", chat_file(511)), ("tiny lines", tiny_file(511))):
        m = peak_memory(_commands(path)["ours"])
        ok = m["pss_mb"] <= RSS_LIMIT_MB
        line = (
            f"memory: {label} {path.name}: {int(m['examples']):,} examples, peak PSS {m['pss_mb']:.0f} MB "
            f"(validating process {m['own_pss_mb']:.0f} MB, counting process {m['child_pss_mb']:.0f} MB; goal "
            f"<= {RSS_LIMIT_MB}: {'met' if ok else 'NOT met'}); largest RSS of one process {m['rss_mb']:.0f} MB"
        )
        print("  " + line, flush=True)
        verdicts.append(line)


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_profile() -> tuple[float, list[tuple[str, float]]]:
    """`python -X importtime -c "import function_app"`: total seconds and the slowest top-level imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import function_app"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        check=True,
    )
    rows = []
    for ln in proc.stderr.splitlines():
        m = _IMPORTTIME.match(ln)
        if m:
            rows.append((len(m.group(3)) // 2, m.group(4), int(m.group(2)) / 1e6))
    total = next(t for depth, name, t in rows if name == "function_app")
    top = sorted(((name, t) for depth, name, t in rows if depth == 1), key=lambda r: -r[1])
    return total, top


def cold(repeat: int, verdicts: list[str]) -> None:
    print(f"\ncold starts (median of {repeat}; bytecode compiled, as deployed; load average {os.getloadavg()[0]:.1f})")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "shared"), str(REPO / "blueprints")], env=_env()
    )
    imports = [timed([sys.executable, "-c", "import function_app"], figures_out=False) for _ in range(repeat)]
    profiles = [import_profile() for _ in range(repeat)]
    wall = statistics.median(m["wall"] for m in imports)
    total = statistics.median(p[0] for p in profiles)
    top = min(profiles, key=lambda p: abs(p[0] - total))[1]
    path = ten_lines()
    cli = [timed([sys.executable, "-m", "shared.cli", "validate", str(path)], figures_out=False) for _ in range(repeat)]
    cli_wall = statistics.median(m["wall"] for m in cli)
    cli_cpu = statistics.median(m["cpu"] for m in cli)
    load = os.getloadavg()[0]
    print(f"  import function_app: {wall:.2f} s wall (process), {total:.2f} s by -X importtime; slowest top-level:")
    for name, t in top[:8]:
        print(f"    {name:<45} {t:6.3f} s")
    lines = [
        f"cold: import function_app {total:.2f} s by -X importtime (goal <= {IMPORT_GOAL_S} s: "
        f"{'met' if total <= IMPORT_GOAL_S else 'NOT met'}); {wall:.2f} s for the whole process",
        f"cold: python -m shared.cli validate {path.name} (10 lines) {cli_wall:.2f} s wall, {cli_cpu:.2f} s CPU "
        f"(goal <= {CLI_GOAL_S} s wall: {'met' if cli_wall <= CLI_GOAL_S else 'NOT met'}; load average {load:.1f})",
    ]
    for ln in lines:
        print("  " + ln)
    verdicts.extend(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the two 511 MiB files")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start figures")
    args = parser.parse_args(argv)
    if shutil.which("taskset") is None:
        print("taskset not found (util-linux): needed for the one-core figures", file=sys.stderr)
        return 2
    files = {
        "default": chat_file(args.size_mb),
        "realistic": chat_file(args.size_mb, system_prompts=3),
    }
    verdicts: list[str] = []
    medians = {kind: throughput(kind, path, args.repeat) for kind, path in files.items()}
    for kind, path in files.items():
        verdicts += print_throughput(kind, path, medians[kind], args.repeat)
    if not args.no_memory:
        memory(verdicts)
    if not args.no_cold:
        cold(max(args.repeat, 5), verdicts)
    print(f"\nsummary (ratios from this run; load average {os.getloadavg()[0]:.2f}):")
    for v in verdicts:
        print("  " + v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
