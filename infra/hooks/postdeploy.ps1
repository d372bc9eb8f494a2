# azd postdeploy hook (Windows): the same as postdeploy.sh. Subscribes the Event Grid blob trigger to
# BlobCreated events of the drop container once the code is deployed and the blobs_extension key exists.
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'SERVICE_API_URI',
                  'EVENTGRID_SYSTEM_TOPIC_NAME', 'DROP_CONTAINER_NAME', 'BLOB_TRIGGER_FUNCTION_NAME') {
    if (-not [Environment]::GetEnvironmentVariable($name)) { throw "postdeploy: $name is not set (run 'azd provision')" }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    throw 'postdeploy: the Azure CLI (az) is required to create the Event Grid subscription (docs/deploy.md)'
}

$key = $null
for ($attempt = 1; $attempt -le 30; $attempt++) {
    $key = az functionapp keys list --subscription $env:AZURE_SUBSCRIPTION_ID --resource-group $env:AZURE_RESOURCE_GROUP `
        --name $env:AZURE_FUNCTION_APP_NAME --query 'systemKeys.blobs_extension' --output tsv 2>$null
    if ($key) { break }
    Write-Host "postdeploy: waiting for the function host to create the blobs_extension key ($attempt/30)"
    Start-Sleep -Seconds 10
}
if (-not $key) {
    throw "postdeploy: no blobs_extension key after 5 minutes; check the app started (App Insights), then 'azd deploy'"
}

$endpoint = "$($env:SERVICE_API_URI)/runtime/webhooks/blobs?functionName=Host.Functions.$($env:BLOB_TRIGGER_FUNCTION_NAME)&code=$key"
# az is a .cmd on Windows: the embedded quotes keep cmd.exe from splitting the URL at '&'.
az eventgrid system-topic event-subscription create `
    --subscription $env:AZURE_SUBSCRIPTION_ID `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --system-topic-name $env:EVENTGRID_SYSTEM_TOPIC_NAME `
    --name 'drop-blob-created' `
    --endpoint-type webhook `
    --endpoint "`"$endpoint`"" `
    --included-event-types Microsoft.Storage.BlobCreated `
    --subject-begins-with "/blobServices/default/containers/$($env:DROP_CONTAINER_NAME)/blobs/" `
    --output none
if ($LASTEXITCODE -ne 0) { throw 'postdeploy: creating the Event Grid subscription failed' }

Write-Host "postdeploy: blobs created in '$($env:DROP_CONTAINER_NAME)' now trigger $($env:BLOB_TRIGGER_FUNCTION_NAME)"
