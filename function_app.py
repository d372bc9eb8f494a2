"""Fine-tuning autopilot for Azure OpenAI: drop a JSONL file, get a validated, trained, gated, deployed model.

This module only composes the app from Blueprints; the work lives in `shared/`. Settings that break a bound
with host.json (shared/settings.py: check_configuration) stop the app here, at start-up, with the reason.
"""

import azure.functions as func

from blueprints import advance, api, dashboard, deploy, ingest, notifications
from shared import telemetry
from shared.hostconfig import HostConfig
from shared.settings import check_configuration, get_settings

check_configuration(get_settings(), HostConfig.load())
telemetry.configure()  # OpenTelemetry to Application Insights, only when APPLICATIONINSIGHTS_CONNECTION_STRING is set

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (ingest.bp, advance.bp, deploy.bp, api.bp, notifications.bp, dashboard.bp):
    app.register_functions(blueprint)
