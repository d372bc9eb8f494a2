"""Fine-tuning autopilot for Azure OpenAI: drop a JSONL file, get a validated, trained, gated, deployed model.

This module only composes the app from Blueprints; the work lives in `shared/`.
"""

import azure.functions as func

from blueprints import api, dashboard, deploy, ingest, notifications, training
from shared import telemetry

telemetry.configure()  # OpenTelemetry to Application Insights, only when APPLICATIONINSIGHTS_CONNECTION_STRING is set

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (ingest.bp, training.bp, deploy.bp, api.bp, notifications.bp, dashboard.bp):
    app.register_functions(blueprint)
