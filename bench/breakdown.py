"""Where the validator spends its CPU on a file: one process per question, CPU seconds (not wall).

    python -m bench.breakdown FILE [FILE ...]

For each file:
- **start-up**, in fresh interpreters: the imports `validate` needs (shared.validation.validator, numpy,
  tiktoken, pydantic), loading the encoding's ranks (from the cache encodings.py keeps, and parsing the
  `.tiktoken` file), and building tiktoken's full `CoreBPE` from them;
- **the parsing thread's stages**, each alone over the file's lines, in the order the validator runs them:
  reading and splitting lines, the plain-chat lane (orjson + checks), the secret/PII scan, duplicate
  hashing and lookup, batching for the tokenizer (`TokenPipeline.add`: joins, the repeated-string cache);
- **tokens alone**, on one thread over the file's content strings in 512 KB batches: tiktoken by itself, then
  the chunk table (chunk_counts.py) empty at first and then filled, with the share of chunks it found; the
  same for natural text (Python's reference manual and the docstrings of its standard library, about 2 MiB of
  English prose with code, which ships with Python), so the table is not judged only on the generator's word
  list;
- **one validate**, twice: with tokens counted on threads, a real `validate`'s wall time and process CPU, its
  parsing thread's CPU (parsing, the chunk table's look-ups and the per-example sums) and its tokenizer
  threads' CPU (`count_texts`: tiktoken for the chunks the table did not have, summed over threads), and how
  many tiktoken calls went out; with the counting process (counting_process.py), the same parent figures,
  the child's CPU and how long the parent waited for its answers.
Stages measured alone add up to a little more than the parsing thread's CPU in the real run (each pays its
own loop). Machines here are shared: run it twice and compare, and read CPU, not wall.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from bench.validate import _env

STARTUP = textwrap.dedent(
    """
    import json, time
    c0 = time.process_time()
    import shared.validation.validator
    c1 = time.process_time()
    from shared.validation import encodings
    spec = encodings._load_spec("o200k_base")
    c2 = time.process_time()
    cache, encodings.RANKS_CACHE_DIR = encodings.RANKS_CACHE_DIR, None
    encodings._load_spec("o200k_base")
    c3 = time.process_time()
    encodings._core(spec, spec.ranks)
    c4 = time.process_time()
    print(json.dumps({"imports": c1 - c0, "ranks (cached)": c2 - c1, "ranks (parsed)": c3 - c2,
                      "CoreBPE (full)": c4 - c3}))
    """
)

STAGES = textwrap.dedent(
    """
    import json, sys, time
    from shared.validation.duplicates import DuplicateFinder
    from shared.validation.formats import ROLES
    from shared.validation.plain_chat import plain_chat_line, role_overheads
    from shared.validation.reading import StreamFacts, iter_chunks, iter_lines
    from shared.validation.sensitive import SensitiveScanner
    from shared.validation.tokens import TokenBatch, TokenCache, Tokenizer, TokenPipeline
    out = {}
    tokenizer = Tokenizer("o200k_base")
    tokenizer.prime_roles(ROLES)
    overheads = role_overheads(tokenizer.role_tokens)
    t = time.thread_time()
    with open(sys.argv[1], "rb") as f:
        lines = [raw.strip() for _, raw in iter_lines(iter_chunks(f, 1 << 20), StreamFacts(),
                 max_bytes=1 << 30, max_line_bytes=1 << 25) if raw]
    out["read + split lines"] = time.thread_time() - t
    t = time.thread_time()
    plain = [plain_chat_line(d, overheads) for d in lines]
    out["plain-chat lane (orjson + checks)"] = time.thread_time() - t
    scanner = SensitiveScanner()
    t = time.thread_time()
    for i, d in enumerate(lines):
        scanner.add(i, d)
    scanner.flush()
    out["secret/PII scan"] = time.thread_time() - t
    finder = DuplicateFinder(100)
    t = time.thread_time()
    for i, d in enumerate(lines):
        finder.add(hash(d) & 0xFFFFFFFFFFFFFFFF, i)
    finder.finish()
    out["duplicates (hash + lookup)"] = time.thread_time() - t
    pipeline = TokenPipeline(tokenizer, 1, limit=65536, keep_over_limit=100, cache=TokenCache())
    pipeline._submit = lambda: setattr(pipeline, "_batch", TokenBatch())  # batching only, nothing counted
    t = time.thread_time()
    for i, (d, p) in enumerate(zip(lines, plain)):
        if p is not None:
            pipeline.add(i, p.messages, p.fixed, p.texts, p.assistant_texts, len(d))
    out["tokenizer hand-off (batches, cache)"] = time.thread_time() - t
    pipeline.close()
    out["lines"] = len(lines)
    out["plain lines"] = sum(p is not None for p in plain)
    print(json.dumps(out))
    """
)

TOKENIZE = textwrap.dedent(
    """
    import json, sys, time
    import orjson
    from shared.validation.tokens import Tokenizer
    if sys.argv[1] == "natural":  # Python's reference manual and the standard library's docstrings, by paragraph
        import ast, pathlib, pydoc_data.topics, sysconfig
        docs = list(pydoc_data.topics.topics.values())
        for path in sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
            if "test" in path.parts or "site-packages" in path.parts:
                continue
            try:
                tree = ast.parse(path.read_bytes())
            except (SyntaxError, ValueError):
                continue
            kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            docs += [d for node in ast.walk(tree) if isinstance(node, kinds) and (d := ast.get_docstring(node))]
        texts = [p for doc in docs for p in doc.split("\\n\\n") if p.strip()]
    else:
        texts = [m["content"] for line in open(sys.argv[1], "rb") for m in orjson.loads(line)["messages"]
                 if isinstance(m.get("content"), str)]
    batches, batch, size = [], [], 0
    for t in texts:
        batch.append(t)
        size += len(t)
        if size >= 512 * 1024:
            batches.append(batch)
            batch, size = [], 0
    batches.append(batch)
    tokenizer = Tokenizer("o200k_base")
    tokenizer._encoding.full()
    table = tokenizer._encoding.chunk_counts
    out = {}
    ways = (("tiktoken alone", tokenizer.count_joined), ("chunk table, empty at first", tokenizer.count_many),
            ("chunk table, filled", tokenizer.count_many))
    for name, count in ways:
        table.chunks = table.found = 0
        t = time.thread_time()
        total = sum(int(count(b).sum()) for b in batches)
        out[name] = time.thread_time() - t
        out[f"{name}: tokens"] = total
        if name.startswith("chunk"):
            out[f"{name}: chunks found"] = table.found / max(table.chunks, 1)
    out["chunk table: entries"] = len(table)
    out["texts"] = len(texts)
    out["MiB"] = sum(len(t.encode("utf-8", "replace")) for t in texts) / 2**20
    print(json.dumps(out))
    """
)

RUN = textwrap.dedent(
    """
    import json, resource, sys, threading, time
    import shared.validation.counting_process as P
    import shared.validation.tokens as T
    import shared.validation.validator as V
    from shared.validation import ValidationOptions, encodings
    process = sys.argv[2] == "process"
    if not process:
        encodings.encoding("o200k_base").full()  # the child builds its own: part of what it does
    spent, waited = [], []
    lock = threading.Lock()
    count_texts, result = T.count_texts, P.CountingProcess.result
    def timed(tokenizer, texts):
        t = time.thread_time()
        try:
            return count_texts(tokenizer, texts)
        finally:
            with lock:
                spent.append(time.thread_time() - t)
    def waiting(self):
        t = time.perf_counter()
        try:
            return result(self)
        finally:
            waited.append(time.perf_counter() - t)
    T.count_texts, P.CountingProcess.result = timed, waiting
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w, m = time.perf_counter(), time.thread_time()
    with open(sys.argv[1], "rb") as f:
        report = V.validate(f, options=ValidationOptions(counting_process=process))
    wall, main = time.perf_counter() - w, time.thread_time() - m
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out = {"validate wall": wall, "validate CPU (process)": cpu, "parsing thread CPU": main}
    if process:
        out.update({"counting process CPU": child.ru_utime + child.ru_stime, "waited for it": sum(waited)})
    else:
        out.update({"tokenizer threads CPU": sum(spent), "tiktoken calls": len(spent)})
    out["tokens"] = report.tokens.total if report.tokens else 0
    print(json.dumps(out))
    """
)


def _run(code: str, *args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def breakdown(path: Path) -> dict[str, dict[str, float]]:
    return {
        "start-up": _run(STARTUP),
        "parsing thread, stage by stage": _run(STAGES, str(path)),
        "tokens alone (one thread, 512 KB batches, the core built first)": _run(TOKENIZE, str(path)),
        "one validate, tokens counted on threads (the core built first)": _run(RUN, str(path), "threads"),
        "one validate, with the counting process (it builds the core)": _run(RUN, str(path), "process"),
    }


def _shown(name: str, value: float) -> str:
    if name.endswith("found"):
        return f"{value:.1%}"
    if name.endswith(("tokens", "entries")) or name in ("lines", "plain lines", "tiktoken calls", "texts"):
        return f"{value:,.0f}"
    return f"{value:.2f}" if name == "MiB" else f"{value:.3f} s"


def _print(title: str, figures: dict[str, dict[str, float]]) -> None:
    print(title)
    for section, values in figures.items():
        print(f"  {section}")
        for name, value in values.items():
            print(f"    {name:<44} {_shown(name, value):>12}")


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.files:
        load = os.getloadavg()[0]
        figures = breakdown(path)
        title = f"\n{path.name} ({path.stat().st_size / 2**20:.0f} MiB), load average {load:.2f} -> "
        _print(f"{title}{os.getloadavg()[0]:.2f}; CPU seconds", figures)
    load = os.getloadavg()[0]
    natural = {"tokens alone (one thread, 512 KB batches, the core built first)": _run(TOKENIZE, "natural")}
    title = "\nnatural text: Python's reference manual and standard-library docstrings, by paragraph, load average"
    _print(f"{title} {load:.2f} -> {os.getloadavg()[0]:.2f}; CPU seconds", natural)
    return 0


if __name__ == "__main__":
    sys.exit(main())
