"""`make demo`: the main job on the local stack, end to end.

Starts Azurite + the Azure OpenAI emulator + the development host, deploys the base model (the baseline) and a
judge, drops the bundled sample dataset with its validation and held-out test companions into the drop
container and follows the run until it ends, printing each state change and the training loss as it happens:
trained, measured, evaluated against the base model on the test set (Evals API), and promoted onto the serving
deployment `contoso-support` when it is better. Outputs land in demo-output/. The last line printed is the final
run record as one line of JSON. Exit status 0 only when the run reached `deployed` with a passed evaluation;
everything started is stopped in all cases.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from devstack import REPO, Stack
from shared.runs import RunRecord, RunState
from shared.services import Services
from shared.settings import settings_from_env
from shared.submissions import drop_file

DATA = REPO / "demo" / "data"
OUT = REPO / "demo-output"
ARTIFACTS = (
    "validation.json", "results.csv", "metrics.json", "loss.png", "accuracy.png", "eval.json", "eval.png", "events.json"
)
BASE_MODEL = "gpt-4o-mini-2024-07-18"
BASELINE = "contoso-base"
JUDGE = "contoso-judge"
SERVING = "contoso-support"
GRADERS = [
    {"type": "text_similarity", "name": "fuzzy", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.7},
    {"type": "text_similarity", "name": "rouge_l", "evaluation_metric": "rouge_l", "pass_threshold": 0.5},
    {"type": "score_model", "name": "judge", "model": JUDGE, "range": [0, 10], "pass_threshold": 7},
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the run to end")
    parser.add_argument("--train", default=str(DATA / "support-train.jsonl"))
    parser.add_argument("--validation", default=str(DATA / "support-valid.jsonl"))
    parser.add_argument("--test", default=str(DATA / "support-test.jsonl"))
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
            assert services.deployments is not None
            for name in (BASELINE, JUDGE):
                services.deployments.create_or_update_and_wait(name, model_name=BASE_MODEL, timeout=60)
            say(f"deployed the base model {BASE_MODEL} as {BASELINE} (the baseline) and {JUDGE} (the judge)")
            services.blobs.get_blob_client(services.settings.drop_container, "support.test.jsonl").upload_blob(
                Path(args.test).read_bytes(), overwrite=True
            )
            metadata = {
                "suffix": "contoso-support",
                "seed": "42",
                "gate_max_full_valid_loss": "2.5",
                "serve_as": SERVING,
                "eval_graders": json.dumps(GRADERS),
                "eval_compare_to": BASELINE,
                "eval_min_improvement": "0.1",
            }
            blob_name, run_id = drop_file(
                services, args.train, name="support.jsonl", validation_path=args.validation, metadata=metadata
            )
            say(
                f"dropped {blob_name} (+ support.validation.jsonl, support.test.jsonl) into "
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
    passed = record.evaluation is not None and record.evaluation.passed
    return 0 if record.state == RunState.DEPLOYED and passed else 1


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
    e = record.evaluation
    if e is not None:
        lines.append(f"  evaluation  {e.status}, passed={e.passed}: {e.test_examples} held-out examples, "
                     f"graders {', '.join(e.graders)}")
        lines.append(f"    baseline  {e.baseline.deployment}: score {e.baseline.score}, "
                     f"pass rate {e.baseline.pass_rate}")
        lines.append(f"    candidate {e.candidate.deployment}: score {e.candidate.score}, pass rate "
                     f"{e.candidate.pass_rate}; improvement {e.improvement} (95% CI {e.ci95})")
        for reason in e.reasons:
            lines.append(f"    reason    {reason}")
    if record.promotion is not None:
        p = record.promotion
        lines.append(f"  promoted    {p.deployment} serves {p.model} (was {p.previous_model or 'not deployed'})")
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
