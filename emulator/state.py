"""Files, jobs, deployments and ARM operations: stored as plain records, viewed at a moment in time.

Records hold only what was decided when something happened (creation time, the plan, a cancel or a pause);
statuses are derived from them and the clock on every read (see `training`). With `--state-dir` every
change is written to `<dir>/state.json` (atomically) and file contents to `<dir>/files/<id>`, so a restarted
emulator carries on where it stopped.

Scenarios queued by the admin API are consumed by the next object they apply to (see `SCENARIOS`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import uuid
from pathlib import Path
from typing import Any

from shared.epochs import default_epochs

from . import clock, datafiles, limits, reinforcement, training
from .catalog import base_model
from .config import Config

# scenario name -> what it applies to
SCENARIOS = {
    "file_error": "file",
    "file_import_error": "import",
    "rai_failure": "job",
    "job_failure": "job",
    "stuck_queued": "job",
    "safety_eval_failure": "job",
    "deployment_refused": "deployment",
    "deployment_failed": "deployment",
    "deployment_stuck": "deployment",
    "worse_model": "job",
    "eval_run_failure": "eval_run",
    "model_change_refused": "model_change",
}
TERMINAL_JOB = {"succeeded", "failed", "cancelled"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.evals: dict[str, dict[str, Any]] = {}
        self.eval_runs: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        """Uploads API (emulator.uploads): in memory only, like a file import in flight (not persisted)."""
        self.scenarios: list[dict[str, Any]] = []
        self.peaks: dict[str, int] = {}
        """The most of each limited count seen at once since start or reset (emulator.limits)."""
        self.quota_capacity = config.quota_capacity
        self.require_training_type = config.require_training_type
        self._dir = Path(config.state_dir) if config.state_dir else None
        if self._dir:
            self._load()

    # ---------------------------------------------------------------- persistence
    def _load(self) -> None:
        assert self._dir is not None
        path = self._dir / "state.json"
        if not path.exists():
            return
        data = json.loads(path.read_text())
        self.files = data.get("files", {})
        self.jobs = data.get("jobs", {})
        self.deployments = data.get("deployments", {})
        self.operations = data.get("operations", {})
        self.evals = data.get("evals", {})
        self.eval_runs = data.get("eval_runs", {})
        self.scenarios = data.get("scenarios", [])
        self.quota_capacity = data.get("quota_capacity", self.quota_capacity)
        self.require_training_type = data.get("require_training_type", self.require_training_type)
        for file_id in set(self.files) | {j["training_file"] for j in self.jobs.values()}:
            blob = self._dir / "files" / file_id
            if blob.exists():
                self.contents[file_id] = blob.read_bytes()

    def save(self) -> None:
        if not self._dir:
            return
        (self._dir / "files").mkdir(parents=True, exist_ok=True)
        for file_id, content in self.contents.items():
            blob = self._dir / "files" / file_id
            if not blob.exists():
                tmp = blob.with_suffix(".tmp")
                tmp.write_bytes(content)
                os.replace(tmp, blob)
        data = {
            "files": self.files,
            "jobs": self.jobs,
            "deployments": self.deployments,
            "operations": self.operations,
            "evals": self.evals,
            "eval_runs": self.eval_runs,
            "scenarios": self.scenarios,
            "quota_capacity": self.quota_capacity,
            "require_training_type": self.require_training_type,
        }
        tmp = self._dir / "state.json.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._dir / "state.json")

    def reset(self) -> None:
        self.files.clear()
        self.contents.clear()
        self.jobs.clear()
        self.deployments.clear()
        self.operations.clear()
        self.evals.clear()
        self.eval_runs.clear()
        self.uploads.clear()
        self.scenarios.clear()
        self.peaks.clear()
        self.quota_capacity = self.config.quota_capacity
        self.require_training_type = self.config.require_training_type
        if self._dir and (self._dir / "files").exists():
            for blob in (self._dir / "files").iterdir():
                blob.unlink()
        self.save()

    # ---------------------------------------------------------------- scenarios
    def add_scenario(self, name: str, count: int, options: dict[str, Any]) -> dict[str, Any]:
        entry = {"id": new_id("scn")[:16], "scenario": name, "remaining": count, "options": options}
        self.scenarios.append(entry)
        self.save()
        return entry

    def take_scenario(self, target: str) -> dict[str, Any] | None:
        for entry in self.scenarios:
            if SCENARIOS[entry["scenario"]] == target and entry["remaining"] > 0:
                entry["remaining"] -= 1
                if entry["remaining"] <= 0:
                    self.scenarios.remove(entry)
                return entry
        return None

    # ---------------------------------------------------------------- files
    def add_file(self, filename: str, purpose: str, content: bytes | None, *, source: str) -> dict[str, Any]:
        now = clock.now()
        record: dict[str, Any] = {
            "id": new_id("file"),
            "filename": filename,
            "purpose": purpose,
            "created_at": now,
            "bytes": None,
            "source": source,
            "validation": None,
            "running_at": None,
            "ready_at": None,
        }
        self.files[record["id"]] = record
        if content is not None:
            forced = self.take_scenario("file")
            self.set_content(record, content, forced_error=bool(forced))
        self.save()
        return record

    def set_content(
        self, record: dict[str, Any], content: bytes, *, forced_error: bool = False, import_error: str | None = None
    ) -> None:
        now = clock.now()
        record["bytes"] = len(content)
        self.contents[record["id"]] = content
        result = datafiles.validate(content, record["purpose"], self.config.max_file_bytes)
        if result.ok and (forced_error or "file_error" in result.markers):
            result.ok = False
            result.message = datafiles.VALIDATION_PREFIX + "the file could not be validated (scenario file_error)."
        if import_error:
            result.ok = False
            result.message = import_error
        record["validation"] = result.__dict__
        record["data_sha"] = hashlib.sha256(content).hexdigest()
        half = self.config.scaled(self.config.file_seconds) / 2
        record["running_at"] = now + half
        record["ready_at"] = now + 2 * half

    def import_failed(self, record: dict[str, Any], message: str) -> None:
        now = clock.now()
        record["validation"] = {"ok": False, "message": message, "format": None, "examples": 0,
                                "has_bom": False, "markers": []}
        record["running_at"] = now
        record["ready_at"] = now
        self.save()

    def file_status(self, record: dict[str, Any], now: float | None = None) -> str:
        now = clock.now() if now is None else now
        if record["source"] == "results":
            return "processed"
        if record["validation"] is None or now < record["running_at"]:
            return "pending"
        if now < record["ready_at"]:
            return "running"
        return "processed" if record["validation"]["ok"] else "error"

    def file_view(self, record: dict[str, Any]) -> dict[str, Any]:
        status = self.file_status(record)
        view: dict[str, Any] = {
            "object": "file",
            "id": record["id"],
            "bytes": record["bytes"],
            "created_at": int(record["created_at"]),
            "filename": record["filename"],
            "purpose": record["purpose"],
            "status": status,
        }
        if status == "error":
            view["status_details"] = record["validation"]["message"]
        if record.get("expires_at") is not None:
            view["expires_at"] = record["expires_at"]
        return view

    def file_content(self, record: dict[str, Any]) -> bytes:
        if record["source"] == "results":
            job = self.jobs[record["job_id"]]
            return training.results_csv(job, legacy=job["api_version"] == "2023-05-15")
        return self.contents.get(record["id"], b"")

    def examples(self, file_id: str) -> list[dict[str, Any]]:
        """The examples of a (validated) file."""
        return datafiles.read_examples(self.contents.get(file_id, b""))

    def delete_file(self, file_id: str) -> None:
        self.files.pop(file_id, None)
        if any(j["training_file"] == file_id for j in self.jobs.values()):
            self.save()  # a model keeps what it learned: inference still matches against this content
            return
        self.contents.pop(file_id, None)
        if self._dir:
            blob = self._dir / "files" / file_id
            if blob.exists():
                blob.unlink()
        self.save()

    # ---------------------------------------------------------------- jobs
    def create_job(self, body: dict[str, Any], *, base: str, api_version: str, parent: str | None) -> dict[str, Any]:
        """Fix the plan of a validated create request (the caller has checked model and files)."""
        cfg = self.config
        training_file = self.files[body["training_file"]]
        content = self.contents[training_file["id"]]
        fmt = training_file["validation"]["format"]
        model = base_model(base)
        assert model is not None
        examples = datafiles.read_examples(content)
        limit = model.max_example_tokens
        epoch_tokens = sum(min(limit, datafiles.example_tokens(e, fmt, model.encoding)) for e in examples)
        hp = _requested_hyperparameters(body)
        n = len(examples)
        n_epochs = hp["n_epochs"] if isinstance(hp["n_epochs"], int) else default_epochs(n)
        batch = hp["batch_size"] if isinstance(hp["batch_size"], int) else training.auto_batch_size(n)
        lr = hp["learning_rate_multiplier"]
        lr = float(lr) if isinstance(lr, (int, float)) else training.auto_lr_multiplier(batch)
        per_epoch = math.ceil(n / batch)
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**31)
        scenario = self.take_scenario("job")
        markers = training_file["validation"].get("markers", [])
        scenario_name = scenario["scenario"] if scenario else next(
            (m for m in ("rai_failure", "job_failure", "stuck_queued", "safety_eval_failure", "worse_model")
             if m in markers), None
        )
        options = scenario["options"] if scenario else {}
        job_id = new_id("ftjob")
        suffix = body.get("suffix")
        ft_name = f"{base}.ft-{uuid.uuid5(uuid.NAMESPACE_URL, job_id).hex}" + (f"-{suffix}" if suffix else "")
        total_tokens = epoch_tokens * n_epochs
        job_seconds = cfg.scaled(cfg.job_seconds) * (1 + max(0.0, math.log10(max(1, total_tokens) / 1e5)))
        plan = {
            "validate_s": 0.15 * job_seconds,
            "queue_s": 0.15 * job_seconds,
            "train_s": 0.62 * job_seconds,
            "finalize_s": 0.08 * job_seconds,
            "results_s": cfg.scaled(cfg.results_seconds),
            "seed": seed,
            "data_sha": training_file.get("data_sha", ""),
            "n_examples": n,
            "n_epochs": n_epochs,
            "batch_size": batch,
            "learning_rate_multiplier": lr,
            "beta": hp.get("beta"),
            "steps_per_epoch": per_epoch,
            "total_steps": per_epoch * n_epochs,
            "epoch_tokens": epoch_tokens,
            "trained_tokens": total_tokens,
            "has_validation": bool(body.get("validation_file")),
            "scenario": scenario_name,
            "harm_types": options.get("harm_types"),
            "safety_harm_types": ", ".join(options["harm_types"]) if options.get("harm_types") else None,
            "fine_tuned_model": ft_name,
            "format": fmt,
        }
        method = body.get("method")
        rft: dict[str, Any] = (method or {}).get("reinforcement") or {}
        if (method or {}).get("type") == "reinforcement":
            plan["method"] = "reinforcement"
            # A grader reading fields the data lacks scores every sample 0, without an error (the service's way).
            refs = reinforcement.item_refs(rft.get("grader"))
            plan["grader_fields_ok"] = reinforcement.fields_present(examples, refs)
        job = {
            "id": job_id,
            "created_at": clock.now(),
            "model": body["model"],
            "base_model": base,
            "parent_model": parent,
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "suffix": suffix,
            "seed": seed,
            "method_type": (method or {}).get("type", "supervised"),
            "method_given": method is not None,
            # RFT: the grader (and response_format) as given, shown back on the job like the service does.
            "method_extra": {k: v for k, v in rft.items() if k != "hyperparameters"} or None,
            "requested_hyperparameters": hp,
            "training_type": body.get("trainingType") or body.get("training_type"),
            "integrations": body.get("integrations"),
            "metadata": body.get("metadata"),
            "api_version": api_version,
            "plan": plan,
            "result_file_id": new_id("file"),
            "cancel_offset": None,
            "pauses": [],
        }
        self.jobs[job_id] = job
        self.save()
        return job

    def active(self, job: dict[str, Any], now: float) -> float:
        paused = 0.0
        for pause in job["pauses"]:
            end = pause["real_end"] if pause["real_end"] is not None else now
            paused += end - pause["real_start"]
        return float(now - job["created_at"] - paused)

    def real_time(self, job: dict[str, Any], offset: float) -> float:
        if math.isinf(offset):
            return math.inf
        t = job["created_at"] + offset
        for pause in job["pauses"]:
            if pause["at"] < offset:  # what happened at the moment of pausing happened before the pause
                if pause["real_end"] is None:
                    return math.inf
                t += pause["real_end"] - pause["real_start"]
        return float(t)

    def job_status(self, job: dict[str, Any], now: float | None = None) -> str:
        """Canonical status: validating_files, queued, running, paused, succeeded, failed, cancelled."""
        now = clock.now() if now is None else now
        limits.schedule(self)
        a = self.active(job, now)
        final, end, _ = training.outcome(job["plan"])
        if job["cancel_offset"] is not None and job["cancel_offset"] < end:
            return "cancelled"
        if a >= end:
            if final == "succeeded" and self.results_ready(job, now):
                self._materialize_results(job)
            return final
        if job["pauses"] and job["pauses"][-1]["real_end"] is None:
            return "paused"
        p = training.phases(job["plan"])
        if a < p.validated:
            return "validating_files"
        if a < p.started:
            return "queued"
        return "running"

    def results_ready(self, job: dict[str, Any], now: float | None = None) -> bool:
        """Whether the results file exists yet (it follows "Job succeeded." by `results_seconds`)."""
        now = clock.now() if now is None else now
        return self.active(job, now) >= training.phases(job["plan"]).results

    def _materialize_results(self, job: dict[str, Any]) -> None:
        if job["result_file_id"] in self.files or job.get("results_deleted"):
            return
        end = training.phases(job["plan"]).results
        self.files[job["result_file_id"]] = {
            "id": job["result_file_id"],
            "filename": "results.csv",
            "purpose": "fine-tune-results",
            "created_at": self.real_time(job, end),
            "bytes": len(training.results_csv(job, legacy=job["api_version"] == "2023-05-15")),
            "source": "results",
            "job_id": job["id"],
            "validation": {"ok": True, "message": None},
            "running_at": 0,
            "ready_at": 0,
        }
        self.save()

    def job_events(self, job: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
        """Events so far, oldest first, each with id and created_at (wall clock)."""
        now = clock.now() if now is None else now
        a = self.active(job, now)
        cut = a if job["cancel_offset"] is None else min(a, job["cancel_offset"])
        items = [e for e in training.timeline(job) if e["offset"] <= cut]
        extra = []
        for pause in job["pauses"]:
            extra.append({"offset": pause["at"], "level": "info", "message": "Job paused.", "type": "message",
                          "data": None, "order": 1, "real": pause["real_start"]})
            if pause["real_end"] is not None:
                extra.append({"offset": pause["at"], "level": "info", "message": "Job resumed.", "type": "message",
                              "data": None, "order": 2, "real": pause["real_end"]})
        if job["cancel_offset"] is not None and job["cancel_offset"] <= a:
            final, end, _ = training.outcome(job["plan"])
            if job["cancel_offset"] < end:
                extra.append({"offset": job["cancel_offset"], "level": "info", "message": "Job cancelled.",
                              "type": "message", "data": None, "order": 3})
        merged = sorted(
            [(e["offset"], 0, i, e) for i, e in enumerate(items)]
            + [(e["offset"], e["order"], i, e) for i, e in enumerate(extra)],
            key=lambda t: (t[0], t[1], t[2]),
        )
        out = []
        for index, (_, _, _, event) in enumerate(merged):
            out.append({
                "id": training.event_id(job["id"], index) if event.get("order") is None
                else training.event_id(job["id"], 100_000 + index),
                "created_at": int(event["real"] if event.get("real") is not None
                                  else self.real_time(job, event["offset"])),
                "level": event["level"],
                "message": event["message"],
                "type": event["type"],
                "data": event["data"],
            })
        return out

    def job_checkpoints(self, job: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
        now = clock.now() if now is None else now
        a = self.active(job, now)
        cut = a if job["cancel_offset"] is None else min(a, job["cancel_offset"])
        out = []
        for ckpt in training.checkpoints(job):
            if ckpt["offset"] <= cut:
                out.append({**ckpt, "created_at": int(self.real_time(job, ckpt["offset"]))})
        return training.kept(out)

    def fine_tuned_models(self) -> dict[str, dict[str, Any]]:
        """Fine-tuned model name -> its job, for succeeded jobs."""
        out = {}
        for job in self.jobs.values():
            if not job.get("deleted") and self.job_status(job) == "succeeded":
                out[job["plan"]["fine_tuned_model"]] = job
        return out

    def resolve_model(self, name: str) -> dict[str, Any] | None:
        """What a deployment's model name refers to: a fine-tuned model, a checkpoint (id or name) or a base model.

        Returns {kind, job, step, deployable, reason} or None when nothing is known by that name.
        """
        for job in self.jobs.values():
            if job.get("deleted"):
                continue
            plan = job["plan"]
            status = None
            if name == plan["fine_tuned_model"]:
                status = self.job_status(job)
                if status != "succeeded":
                    return None
                return {"kind": "fine-tuned", "job": job, "step": plan["total_steps"]}
            for ckpt in training.checkpoints(job):
                if name in (ckpt["id"], ckpt["fine_tuned_model_checkpoint"]):
                    status = status or self.job_status(job)
                    if status != "succeeded":
                        return None
                    last_epochs = plan["n_epochs"] - ckpt["epoch"] < 3
                    return {"kind": "checkpoint", "job": job, "step": ckpt["step_number"], "deployable": last_epochs}
        model = base_model(name)
        if model is not None:
            return {"kind": "base", "job": None, "step": None, "model": model}
        return None

    # ---------------------------------------------------------------- deployments
    def serving(self, dep: dict[str, Any], now: float | None = None) -> bool | None:
        """None: not Succeeded (unknown to the data plane); False: Succeeded but not ready yet; True: serves."""
        now = clock.now() if now is None else now
        if self.deployment_state(dep, now) != "Succeeded":
            return None
        return bool(now >= dep["ready_at"] + dep.get("not_ready_s", 0.0))

    def deployment_state(self, dep: dict[str, Any], now: float | None = None) -> str:
        now = clock.now() if now is None else now
        if dep.get("deleting_at") is not None:
            return "Deleting"
        if now < dep["creating_at"]:
            return "Accepted"
        if dep["outcome"] == "stuck" or now < dep["ready_at"]:
            return "Creating"
        return "Failed" if dep["outcome"] == "failed" else "Succeeded"

    def prune_deleted(self, now: float | None = None) -> None:
        now = clock.now() if now is None else now
        gone = [
            n for n, d in self.deployments.items()
            if (d.get("deleting_at") is not None and now >= d["gone_at"])
            or (d.get("expires_at") is not None and now >= d["expires_at"])
        ]
        for name in gone:
            del self.deployments[name]
        if gone:
            self.save()

    def operation_status(self, op: dict[str, Any], now: float | None = None) -> str:
        now = clock.now() if now is None else now
        if op.get("stuck"):
            return "Creating"
        if now < op["end"]:
            return str(op["running_status"])
        return str(op["final_status"])


def _requested_hyperparameters(body: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as asked: top-level `hyperparameters`, overridden by `method.<type>.hyperparameters`."""
    hp = dict(body.get("hyperparameters") or {})
    method = body.get("method") or {}
    config = method.get(method.get("type", "")) or {}
    inner = config.get("hyperparameters") or {}
    hp.update(inner)
    if "beta" in config and "beta" not in inner:
        hp["beta"] = config["beta"]  # the DPO how-to's placement (method.dpo.beta); the spec's is under hyperparameters
    return {
        "n_epochs": hp.get("n_epochs", "auto"),
        "batch_size": hp.get("batch_size", "auto"),
        "learning_rate_multiplier": hp.get("learning_rate_multiplier", "auto"),
        **({"beta": hp["beta"]} if "beta" in hp else {}),
        **{k: hp[k] for k in ("eval_interval", "eval_samples", "compute_multiplier", "reasoning_effort") if k in hp},
    }
