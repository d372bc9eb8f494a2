"""App settings override host.json the way the Functions host does (AzureFunctionsJobHost__a__b)."""

from devhost.config import HostConfig, apply_overrides


def test_app_settings_override_host_json_case_insensitively() -> None:
    data = {"extensions": {"queues": {"maxDequeueCount": 5, "visibilityTimeout": "00:00:30"}}}
    env = {
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__Extensions__Queues__MaxDequeueCount": "3",
        "AzureFunctionsJobHost__functionTimeout": "00:02:00",
        "UNRELATED": "x",
    }
    merged = apply_overrides(data, env)
    config = HostConfig.from_dict(merged)
    assert config.max_dequeue_count == 3
    assert config.visibility_timeout == 1.0
    assert config.function_timeout == 120.0
    assert data["extensions"]["queues"]["maxDequeueCount"] == 5  # the input is not modified
