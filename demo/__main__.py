"""`make demo`: the main job on the local stack, end to end.

Starts Azurite + the Azure OpenAI emulator + the development host, drops the bundled sample dataset into
the drop container and follows the run until it ends, printing each state change and the training loss as
it happens. Outputs land in demo-output/. The last line printed is the final run record as one line of
JSON. Exit status 0 only when the run reached `deployed`; everything started is stopped in all cases.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

from devstack import REPO, Stack
from shared.runs import RunRecord, RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import drop_file

DATA = REPO / "demo" / "data"
OUT = REPO / "demo-output"
ARTIFACTS = ("validation.json", "results.csv", "metrics.json", "loss.png", "accuracy.png", "events.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=110.0, help="seconds to wait for the run to end")
    parser.add_argument("--train", default=str(DATA / "support-train.jsonl"))
    parser.add_argument("--validation", default=str(DATA / "support-valid.jsonl"))
    args = parser.parse_args(argv)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    record: RunRecord | None = None
    try:
        with Stack() as stack:
            assert stack.azurite is not None
            say(
                f"stack up: Azurite {stack.azurite.blob_endpoint}, emulator {stack.emulator_url}, "
                f"devhost {stack.http_url}"
            )
            services = Services.from_settings(settings_from_env(stack.settings_env), env=stack.settings_env)
            services.ensure_storage()
            metadata = {
                "suffix": "contoso-support",
                "seed": "42",
                "gate_max_full_valid_loss": "2.5",
                "deployment_name": "contoso-support-demo",
            }
            blob_name, run_id = drop_file(
                services, args.train, name="support.jsonl", validation_path=args.validation, metadata=metadata
            )
            say(
                f"dropped {blob_name} (+ support.validation.jsonl) into "
                f"{services.settings.drop_container} -> run {run_id}"
            )
            record = _follow(services, run_id, args.timeout, say)
            if record is not None:
                _save_outputs(services, record)
                say(f"outputs in {OUT.relative_to(REPO)}/: " + ", ".join(sorted(p.name for p in OUT.iterdir())))
    except Exception as exc:  # noqa: BLE001 - report and exit non-zero; the stack is already stopped
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    if record is None:
        print(json.dumps({"state": "unknown", "error": "the run record was never seen"}))
        return 1
    _print_summary(record)
    print(record.model_dump_json())
    return 0 if record.state == RunState.DEPLOYED else 1


def _follow(services: Services, run_id: str, timeout: float, say: object) -> RunRecord | None:
    assert callable(say)
    deadline = time.monotonic() + timeout
    last_state = None
    last_status = None
    last_step = None
    record = None
    while time.monotonic() < deadline:
        found = services.store.load(run_id)
        if found is not None:
            record = found[0]
            if record.state != last_state:
                last_state = record.state
                note = record.history[-1].note if record.history else ""
                say(f"run {record.state.value:<10} {note}")
            if record.job.status and record.job.status != last_status:
                last_status = record.job.status
                say(f"  job {record.job.id}: {record.job.status}")
            metrics = record.job.latest_metrics
            if metrics and metrics.get("step") != last_step:
                last_step = metrics.get("step")
                parts = [f"step {last_step}"] + [
                    f"{k}={metrics[k]:.4f}"
                    for k in ("train_loss", "valid_loss", "full_valid_loss")
                    if isinstance(metrics.get(k), (int, float))
                ]
                say("  " + "  ".join(parts))
            if record.terminal:
                note = record.history[-1].note if record.history else ""
                if record.error and record.error.message[:200] not in note:
                    say(f"  {record.error.code}: {record.error.message}")
                return record
        time.sleep(0.5)
    say(f"timed out after {timeout:.0f} s")
    return record


def _save_outputs(services: Services, record: RunRecord) -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    (OUT / "run.json").write_text(record.model_dump_json(indent=2))
    for name in ARTIFACTS:
        data = services.store.get_artifact(record.id, name)
        if data is not None:
            (OUT / name).write_bytes(data)


def _print_summary(record: RunRecord) -> None:
    lines = [f"run {record.id}: {record.state.value}"]
    if record.validation:
        v = record.validation
        lines.append(f"  data        {v.examples} examples ({v.format}), {v.billed_tokens} billed tokens")
    if record.job.id:
        lines.append(
            f"  job         {record.job.id} -> {record.job.fine_tuned_model} ({record.job.trained_tokens} tokens)"
        )
    if record.metrics:
        m = record.metrics
        lines.append(
            f"  metrics     final train loss {m.final_train_loss}, best full valid loss "
            f"{m.best_full_valid_loss} at step {m.best_full_valid_loss_step}, "
            f"overfitting={m.overfitting}"
        )
    if record.gate:
        lines.append(f"  gate        passed={record.gate.passed}")
    d = record.deployment
    if d.name:
        lines.append(f"  deployment  {d.name} ({d.sku}, capacity {d.capacity}) -> {d.provisioning_state}")
    if d.smoke_test:
        lines.append(f"  smoke test  {d.smoke_test.status} in {d.smoke_test.latency_ms} ms")
        lines.append(f"    Q: {d.smoke_test.prompt[:100]}")
        lines.append(f"    A: {(d.smoke_test.answer or '')[:160]}")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
