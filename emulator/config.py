"""Emulator settings: command-line flags, each with an environment variable, and the durations they imply."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DATA_PLANE_VERSIONS = ("2024-10-21", "2025-04-01-preview", "2023-05-15")
PREVIEW_VERSIONS = ("2025-04-01-preview",)
LEGACY_VERSIONS = ("2023-05-15",)
V1_VERSIONS = ("v1", "preview")
ARM_VERSIONS = ("2025-09-01", "2025-07-01-preview", "2025-06-01", "2024-10-01", "2023-05-01")
"""2025-09-01 is the default of azure-mgmt-cognitiveservices 14.x; 2025-07-01-preview the Developer-tier how-to's."""
DEVELOPER_TIER_ARM_VERSIONS = ("2025-07-01-preview", "2025-09-01")
"""ARM versions on which a Developer-tier sku is accepted (documented with 2025-07-01-preview; 2025-09-01 inferred)."""


@dataclass
class Config:
    """Everything that shapes the emulator's behaviour; durations are in seconds at time scale 1."""

    host: str = "127.0.0.1"
    port: int = 8089
    api_key: str | None = None
    bearer_token: str | None = None
    state_dir: str | None = None
    time_scale: float = 1.0
    job_seconds: float = 6.0
    file_seconds: float = 1.0
    deployment_seconds: float = 2.0
    results_seconds: float = 0.0
    """Time between "Job succeeded." and the results file (+ "Training tokens billed"); minutes on Azure."""
    not_ready_seconds: float = 0.0
    """Time after ARM `Succeeded` during which inference answers `DeploymentNotReady`."""
    developer_lifetime_seconds: float = 86_400.0
    """Lifetime of a Developer-tier deployment (24 h on Azure), after which it is removed."""
    arm_retry_after: int = 1
    quota_capacity: int = 1000
    max_file_bytes: int = 512 * 1024 * 1024
    max_ft_deployments: int = 5
    max_running_jobs: int = 1
    max_queued_jobs: int = 20
    max_total_jobs: int = 100
    max_ft_files: int = 50
    max_ft_files_bytes: int = 1_000_000_000
    require_training_type: bool = False
    fault_seed: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    log_requests: bool = True

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale


# flag name -> (env var, type, help)
FLAGS: dict[str, tuple[str, type, str]] = {
    "api_key": ("EMULATOR_API_KEY", str, "key every data-plane request must carry (api-key header); unset: no check"),
    "bearer_token": (
        "EMULATOR_BEARER_TOKEN",
        str,
        "if set, the only Bearer token accepted; unset: any non-empty Bearer token is accepted",
    ),
    "state_dir": ("EMULATOR_STATE_DIR", str, "folder to persist files, jobs and deployments across restarts"),
    "time_scale": ("EMULATOR_TIME_SCALE", float, "multiplier on every emulated duration (0.25 = four times faster)"),
    "job_seconds": ("EMULATOR_JOB_SECONDS", float, "duration of a small fine-tuning job at time scale 1"),
    "file_seconds": ("EMULATOR_FILE_SECONDS", float, "time a file spends pending+running before processed/error"),
    "deployment_seconds": ("EMULATOR_DEPLOYMENT_SECONDS", float, "time a deployment takes to reach Succeeded"),
    "arm_retry_after": ("EMULATOR_ARM_RETRY_AFTER", int, "Retry-After (s) sent with control-plane operations"),
    "results_seconds": (
        "EMULATOR_RESULTS_SECONDS",
        float,
        "delay between 'Job succeeded.' and the results file / billing events (result_files empty meanwhile)",
    ),
    "not_ready_seconds": (
        "EMULATOR_NOT_READY_SECONDS",
        float,
        "time after ARM Succeeded during which inference answers DeploymentNotReady",
    ),
    "developer_lifetime_seconds": (
        "EMULATOR_DEVELOPER_LIFETIME_SECONDS",
        float,
        "lifetime of a Developer-tier deployment (24 h on Azure)",
    ),
    "quota_capacity": ("EMULATOR_QUOTA_CAPACITY", int, "total deployment capacity (sku units) of the resource"),
    "max_file_bytes": ("EMULATOR_MAX_FILE_BYTES", int, "largest fine-tune file accepted by validation"),
    "max_ft_deployments": ("EMULATOR_MAX_FT_DEPLOYMENTS", int, "cap on fine-tuned deployments per resource"),
    "max_running_jobs": ("EMULATOR_MAX_RUNNING_JOBS", int, "jobs that train at once, in creation order (0: no limit)"),
    "max_queued_jobs": ("EMULATOR_MAX_QUEUED_JOBS", int, "jobs that may wait behind the one running"),
    "max_total_jobs": ("EMULATOR_MAX_TOTAL_JOBS", int, "jobs per resource, ended ones included (deleted ones not)"),
    "max_ft_files": ("EMULATOR_MAX_FT_FILES", int, "fine-tune files per resource"),
    "max_ft_files_bytes": ("EMULATOR_MAX_FT_FILES_BYTES", int, "total bytes of the fine-tune files of a resource"),
    "fault_seed": ("EMULATOR_FAULT_SEED", int, "seed of the random draws of rate-based faults"),
}


def env_defaults() -> dict[str, Any]:
    """Values taken from the environment (flags override them)."""
    out: dict[str, Any] = {}
    for name, (env, kind, _) in FLAGS.items():
        raw = os.environ.get(env)
        if raw not in (None, ""):
            out[name] = kind(raw)
    if os.environ.get("EMULATOR_REQUIRE_TRAINING_TYPE", "").lower() in ("1", "true", "yes"):
        out["require_training_type"] = True
    return out
