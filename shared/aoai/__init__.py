"""Azure OpenAI boundary: a small hand-written client for the data plane and the deployments control plane.

Modules: :mod:`.client` (files, jobs, models, inference), :mod:`.deployments` (ARM deployments),
:mod:`.errors` (the one error hierarchy), :mod:`.api_versions` (which api-version a request needs),
:mod:`.endpoints` (resource and Foundry project endpoints, the two surfaces), :mod:`.uploads` (content in parts),
:mod:`.retry` (retries as an httpx transport, and the rule for
creates), :mod:`.models` (wire models), :mod:`.auth`, :mod:`.redact`. Usage: docs/client.md.
"""

from .api_versions import Surface, UnsupportedFeatureError
from .auth import AI_FOUNDRY_SCOPE, COGNITIVE_SERVICES_SCOPE, MANAGEMENT_SCOPE, StaticTokenCredential
from .client import AzureOpenAIClient
from .deployments import DeploymentPoller, DeploymentsClient
from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    AzureOpenAIError,
    BadRequestError,
    ConflictError,
    DeploymentLimitError,
    DeploymentNotReadyError,
    InsufficientQuotaError,
    InternalServerError,
    NotFoundError,
    OperationFailedError,
    OperationTimeoutError,
    PermissionDeniedError,
    RateLimitError,
    error_from_response,
)
from .models import (
    AsyncOperation,
    ChatCompletion,
    Checkpoint,
    Completion,
    Deployment,
    FileObject,
    FineTuningJob,
    JobEvent,
    JobState,
    Model,
    Upload,
    UploadPart,
)
from .retry import RetryTransport
from .uploads import ByteSource, BytesSource

__all__ = [
    "AI_FOUNDRY_SCOPE",
    "COGNITIVE_SERVICES_SCOPE",
    "MANAGEMENT_SCOPE",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncOperation",
    "AuthenticationError",
    "AzureOpenAIClient",
    "AzureOpenAIError",
    "BadRequestError",
    "ByteSource",
    "BytesSource",
    "ChatCompletion",
    "Checkpoint",
    "Completion",
    "ConflictError",
    "Deployment",
    "DeploymentLimitError",
    "DeploymentNotReadyError",
    "DeploymentPoller",
    "DeploymentsClient",
    "FileObject",
    "FineTuningJob",
    "InsufficientQuotaError",
    "InternalServerError",
    "JobEvent",
    "JobState",
    "Model",
    "NotFoundError",
    "OperationFailedError",
    "OperationTimeoutError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryTransport",
    "StaticTokenCredential",
    "Surface",
    "UnsupportedFeatureError",
    "Upload",
    "UploadPart",
    "error_from_response",
]
