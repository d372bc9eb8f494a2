"""Every setting the app reads, in one typed object built once.

Settings come from the environment, which is where Azure Functions puts app settings (and where the
development host puts the `Values` of local.settings.json). Each field's env name is the field name in
upper case. The storage connection itself (`AzureWebJobsStorage`, or its identity-based `__` forms) is read
by `shared.connections`, exactly as the Functions host reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.hostconfig import HostConfig

BlobTriggerSource = Literal["LogsAndContainerScan", "EventGrid"]
ApiSurface = Literal["auto", "versioned", "v1"]


class Settings(BaseSettings):
    """App settings. Secrets are `SecretStr`: they never show in a repr, a log or a record."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # --- storage: containers and queues (the connection is `AzureWebJobsStorage`) ----------------------
    storage_connection: str = Field(
        default="AzureWebJobsStorage", description="Name of the storage connection setting (host convention)."
    )
    drop_container: str = Field(default="training-data", description="Watched container: each new blob is a run.")
    runs_container: str = Field(default="fine-tuning-runs", description="Run records and outputs; never watched.")
    staging_container: str = Field(
        default="fine-tuning-staging", description="Split train/validation files; never watched."
    )
    deploy_queue: str = Field(default="fine-tuning-deploy", description="Succeeded runs waiting for deployment.")
    submit_queue: str = Field(default="fine-tuning-submit", description="Run submissions from other systems.")
    events_queue: str = Field(default="", description="When set, every run state change is also sent here.")
    blob_trigger_source: BlobTriggerSource = Field(
        default="LogsAndContainerScan", description="EventGrid on Flex Consumption; polling elsewhere."
    )
    training_poll_schedule: str = Field(
        default="0 */1 * * * *", description="NCRONTAB of the timer that advances runs."
    )

    # --- Azure OpenAI ------------------------------------------------------------------------------------
    azure_openai_endpoint: str = Field(
        default="",
        description="https://<resource>.openai.azure.com, or a Foundry project endpoint "
        "https://<resource>.services.ai.azure.com/api/projects/<project> (v1 surface only).",
    )
    azure_openai_api_key: SecretStr | None = Field(
        default=None, description="Leave empty to use managed identity (recommended)."
    )
    azure_openai_api_surface: ApiSurface = Field(
        default="auto",
        description="Data-plane surface: 'versioned' (/openai/...?api-version=, files import from a SAS URL), 'v1' "
        "(/openai/v1/..., no api-version; files uploaded in parts, jobs tagged with metadata.run_id); 'auto' = v1 "
        "for a Foundry project endpoint, versioned otherwise.",
    )
    azure_openai_token_scope: str = Field(
        default="",
        description="Entra ID scope of data-plane tokens; empty = https://cognitiveservices.azure.com/.default for a "
        "resource endpoint, https://ai.azure.com/.default for a Foundry project endpoint.",
    )
    azure_openai_upload_part_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        le=64 * 1024 * 1024,
        description="v1 surface: a file larger than this goes through the Uploads API in parts of this size (the "
        "service takes parts of at most 64 MB); one part or less is one POST /files. Read from the blob one range "
        "per part, never whole.",
    )
    azure_openai_api_version: str = "2024-10-21"
    azure_openai_preview_api_version: str = Field(
        default="2025-04-01-preview",
        description="Used only for job creates that need preview-only fields (trainingType, DPO); empty = never.",
    )
    azure_client_id: str = Field(default="", description="Client id of a user-assigned managed identity, if any.")
    azure_management_endpoint: str = "https://management.azure.com"
    azure_management_api_version: str = "2025-09-01"
    azure_subscription_id: str = ""
    azure_resource_group: str = ""
    azure_openai_account_name: str = ""
    azure_management_token: SecretStr | None = Field(
        default=None, description="Local emulator only: a fixed bearer token for the control plane. Empty in Azure."
    )
    lro_max_wait_seconds: float = Field(
        default=60.0, description="Cap on one Retry-After wait while following a deployment operation."
    )

    # --- run defaults (a profile or blob metadata overrides them) ---------------------------------------
    default_base_model: str = "gpt-4o-mini-2024-07-18"
    default_training_type: str = "Standard"
    default_validation_split: float = Field(
        default=0.1, ge=0.0, lt=0.5, description="Fraction held out when no validation file is given; 0 = none."
    )
    default_deployment_sku: str = "Standard"
    default_deployment_capacity: int = 1
    price_per_million_training_tokens: float | None = None
    eval_baseline_deployment: str = Field(
        default="", description="Deployment of the base model an evaluation compares a candidate with (compare_to)."
    )
    eval_grader_deployment: str = Field(default="", description="Deployment that answers score_model (judge) graders.")
    eval_candidate_sku: str = Field(
        default="Developer", description="SKU of the temporary deployment a candidate is evaluated on (no hosting fee)."
    )
    price_table_file: str = Field(
        default="", description="A JSON price table merged over shared/prices.json (same shape: your prices)."
    )

    # --- behaviour ---------------------------------------------------------------------------------------
    sas_ttl_minutes: int = Field(default=120, ge=5, le=24 * 60, description="Lifetime of the import SAS URL.")
    max_file_bytes: int = 512 * 1024 * 1024
    queued_warning_minutes: float = Field(default=60.0, description="Warn on a run whose job waits longer than this.")
    lease_seconds: float = Field(
        default=30.0,
        ge=1.0,
        le=600.0,
        description="Lease time of an effect in flight (import, job create, deployment): a live holder renews it "
        "every third of this; a dead one loses it after this. How long a lease may be held at most is derived from "
        "the client's own timeouts and retries, not set here.",
    )
    resource_max_files: int = Field(
        default=50, ge=1, description="Fine-tune files the Azure OpenAI resource holds at most (quotas page); lower it "
        "to leave room for other users of the resource. Admission keeps runs within it (shared/admission.py).",
    )
    resource_max_file_bytes: int = Field(default=1_000_000_000, ge=1, description="Total bytes of those files (1 GB).")
    resource_max_outstanding_jobs: int = Field(
        default=21, ge=1, description="Jobs queued or running at once on the resource (1 running + 20 queued)."
    )
    resource_max_jobs: int = Field(default=100, ge=1, description="Jobs the resource holds in total (100).")
    retention_delete_imported_files: bool = Field(
        default=True, description="Delete a run's imported training/validation files once its job ended (the blobs "
        "stay): frees places of the resource's 50-file quota. Each deletion is recorded on the run.",
    )
    retention_schedule: str = Field(
        default="0 */15 * * * *", description="NCRONTAB of the retention timer (shared/retention.py): result files, "
        "serving deployments idle or superseded, max_hosting_hours, artifacts.",
    )
    retention_delete_result_files: bool = Field(
        default=True, description="Delete a job's result files on the service once the run's metrics are stored "
        "(results.csv stays beside the run).",
    )
    retention_serving_days: float = Field(
        default=7.0, gt=0,
        description="A serving deployment idle (unchanged) or superseded this many days is reported.",
    )
    retention_delete_serving: bool = Field(
        default=False, description="Also delete those deployments (default: report only; a profile may say so).",
    )
    retention_artifacts_days: float = Field(
        default=0.0, ge=0, description="Delete a run's blobs this many days after it ended (0: keep them).",
    )
    retention_backfill_batch: int = Field(
        default=5000, ge=1, le=5000, description="Blobs under runs/ each retention pass lists (one List Blobs call) "
        "to find records written before the retention tags existed and re-tag them (shared/runstore.py "
        "backfill_tags); once the sweep has passed every record it costs one blob read per pass.",
    )
    tick_concurrency: int = Field(default=32, ge=1, le=128, description="Runs advanced in parallel in one tick.")
    deploy_wait_seconds: float = Field(
        default=420.0,
        description="Longest wait for a deployment in one invocation; checked at start-up to be below host.json "
        "functionTimeout. The deploy queue's attempts are host.json queues.maxDequeueCount (read, never copied).",
    )
    smoke_test: bool = True
    submit_allow_local_http: bool = Field(
        default=False, description="Local use only: submitted URLs may be http:// and reach loopback addresses."
    )
    submit_allowed_hosts: str = Field(
        default="", description="Comma-separated hosts submitted URLs may name ('.example.com' = that domain); "
        "empty = any public host."
    )
    submit_fetch_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Deadline for fetching one submitted URL (below host.json functionTimeout)."
    )
    notify_webhook_url: SecretStr | None = Field(
        default=None, description="POSTed a signed CloudEvent on each state change (needs NOTIFY_WEBHOOK_SECRET)."
    )
    # --- notifications (shared/notifications.py) ------------------------------------------------------------
    notify_webhook_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks signing secret: whsec_ + base64 of 24-64 random bytes."
    )
    webhook_outbox_queue: str = Field(default="fine-tuning-webhooks", description="Pending webhook deliveries.")
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="Then the delivery goes to <outbox>-poison.")
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, description="First retry delay; doubles each time.")
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600, description="Longest delay.")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    events_source: str = Field(default="/aoai-finetune-autopilot", description="CloudEvents `source` of run events.")
    event_grid_topic_endpoint: str = Field(
        default="", description="Event Grid custom topic endpoint: when set, run events are also published there."
    )
    event_grid_topic_key: SecretStr | None = Field(
        default=None, description="The topic's access key; leave empty to use the managed identity (recommended)."
    )

    @property
    def data_plane_surface(self) -> Literal["versioned", "v1"]:
        """AZURE_OPENAI_API_SURFACE resolved: 'auto' is v1 for a Foundry project endpoint, versioned otherwise."""
        if self.azure_openai_api_surface != "auto":
            return self.azure_openai_api_surface
        from shared.aoai.endpoints import is_project_endpoint

        return "v1" if is_project_endpoint(self.azure_openai_endpoint) else "versioned"

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        if self.notify_webhook_url is not None and self.notify_webhook_secret is None:
            raise ValueError(
                "NOTIFY_WEBHOOK_URL is set without NOTIFY_WEBHOOK_SECRET: every webhook is signed. Create one with "
                "python -c \"import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
            )
        if self.notify_webhook_secret is not None:
            from standardwebhooks.webhooks import Webhook

            try:
                Webhook(self.notify_webhook_secret.get_secret_value())
            except Exception as exc:  # noqa: BLE001 - any decoding failure means the same: unusable secret
                raise ValueError(f"NOTIFY_WEBHOOK_SECRET is not whsec_ + base64 ({type(exc).__name__})") from None
        return self


class ConfigurationError(RuntimeError):
    """Settings that cannot work together: the app refuses to start and says which and why."""


def check_configuration(settings: Settings, host: HostConfig) -> None:
    """Bounds that must hold between settings and host.json; raises ConfigurationError naming each broken one."""
    problems = []
    if host.function_timeout is not None and settings.deploy_wait_seconds >= host.function_timeout:
        problems.append(
            f"DEPLOY_WAIT_SECONDS={settings.deploy_wait_seconds:g} must be below host.json functionTimeout "
            f"({host.function_timeout:g} s): an invocation waiting that long is killed before it can re-queue"
        )
    if host.max_dequeue_count < 1:
        problems.append(f"host.json extensions.queues.maxDequeueCount={host.max_dequeue_count} must be at least 1")
    from shared.aoai.endpoints import is_project_endpoint

    if is_project_endpoint(settings.azure_openai_endpoint) and settings.data_plane_surface != "v1":
        problems.append(
            f"AZURE_OPENAI_ENDPOINT={settings.azure_openai_endpoint} is a Foundry project endpoint, which serves the "
            "v1 surface only: AZURE_OPENAI_API_SURFACE must be v1 or auto"
        )
    if problems:
        raise ConfigurationError("the app cannot start with these settings: " + "; ".join(problems))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings from an explicit mapping of app settings (the CLI, the demo, tests); empty values are unset."""
    fields = Settings.model_fields
    return Settings.model_validate({k.lower(): v for k, v in env.items() if k.lower() in fields and v != ""})
