#!/bin/sh
# azd postdeploy hook: subscribe the Event Grid blob trigger to BlobCreated events of the drop container.
#
# This runs after code deployment, not in Bicep: the webhook needs the `blobs_extension` system key, which
# exists only once the host has indexed an Event Grid blob trigger, and Event Grid validates the endpoint
# when the subscription is created. Re-running it updates the subscription in place (idempotent).
# Needs the Azure CLI, signed in (`az login`) to the same tenant as azd. The key is never printed.
set -eu

: "${AZURE_SUBSCRIPTION_ID:?}" "${AZURE_RESOURCE_GROUP:?}" "${AZURE_FUNCTION_APP_NAME:?}" "${SERVICE_API_URI:?}"
: "${EVENTGRID_SYSTEM_TOPIC_NAME:?}" "${DROP_CONTAINER_NAME:?}" "${BLOB_TRIGGER_FUNCTION_NAME:?}"

if ! command -v az >/dev/null 2>&1; then
  echo "postdeploy: the Azure CLI (az) is required to create the Event Grid subscription (docs/deploy.md)" >&2
  exit 1
fi

key=""
attempt=1
while [ "$attempt" -le 30 ]; do
  key=$(az functionapp keys list --subscription "$AZURE_SUBSCRIPTION_ID" --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --query "systemKeys.blobs_extension" --output tsv 2>/dev/null || true)
  [ -n "$key" ] && break
  echo "postdeploy: waiting for the function host to create the blobs_extension key ($attempt/30)"
  attempt=$((attempt + 1))
  sleep 10
done
if [ -z "$key" ]; then
  echo "postdeploy: no blobs_extension key after 5 minutes; check the app started (App Insights), then 'azd deploy'" >&2
  exit 1
fi

az eventgrid system-topic event-subscription create \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --system-topic-name "$EVENTGRID_SYSTEM_TOPIC_NAME" \
  --name "drop-blob-created" \
  --endpoint-type webhook \
  --endpoint "${SERVICE_API_URI}/runtime/webhooks/blobs?functionName=Host.Functions.${BLOB_TRIGGER_FUNCTION_NAME}&code=${key}" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with "/blobServices/default/containers/${DROP_CONTAINER_NAME}/blobs/" \
  --output none

echo "postdeploy: blobs created in '${DROP_CONTAINER_NAME}' now trigger ${BLOB_TRIGGER_FUNCTION_NAME}"
