// The fine-tuning autopilot on Azure: Flex Consumption function app (Python 3.11), storage without shared
// keys, Event Grid system topic for the blob trigger, monitoring, and access to a new or existing Azure
// OpenAI account. Subscription scope, as azd expects: this file creates the resource group.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------- where
@minLength(1)
@maxLength(64)
@description('azd environment name: seeds resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region of the function app, storage and monitoring; it must offer Flex Consumption.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of whoever runs azd (azd sets AZURE_PRINCIPAL_ID): gets blob upload and Azure OpenAI data access. Empty for none.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

// ---------------------------------------------------------------------------------------------- Azure OpenAI
@description('Create a new Azure OpenAI account. An empty openAiAccountName also creates one.')
param createOpenAi bool = false

@description('Existing Azure OpenAI account to use (same subscription), or the name of the new one (default oai-<token>).')
param openAiAccountName string = ''

@description('Resource group of the existing account; default: the app\'s resource group. Ignored when creating.')
param openAiResourceGroupName string = ''

@description('Region of a new account (it must offer fine-tuning of the base model); default: location.')
param openAiLocation string = ''

@description('false: grant the app Cognitive Services Contributor on the account for deployments. true: a custom role limited to accounts/deployments (needs Owner or User Access Administrator on the account\'s resource group).')
param useCustomDeploymentRole bool = false

// ---------------------------------------------------------------------------------------------- the app (shared/settings.py)
param dropContainerName string = 'training-data'
param runsContainerName string = 'fine-tuning-runs'
param stagingContainerName string = 'fine-tuning-staging'
param deployQueueName string = 'fine-tuning-deploy'
param submitQueueName string = 'fine-tuning-submit'

@description('When set, every run state change is also sent to this queue (created here).')
param eventsQueueName string = ''

@description('NCRONTAB of the timer that advances runs.')
param trainingPollSchedule string = '0 */1 * * * *'

param defaultBaseModel string = 'gpt-4o-mini-2024-07-18'
param defaultTrainingType string = 'Standard'

@description('Data-plane surface: versioned (/openai/...?api-version=, files imported from a SAS URL), v1 (/openai/v1/..., files uploaded in parts, jobs tagged with metadata.run_id), or auto (v1 for a Foundry project endpoint).')
@allowed(['auto', 'versioned', 'v1'])
param openAiApiSurface string = 'auto'

@description('Fraction held out for validation when no validation file is given (a decimal string, 0 to < 0.5).')
param defaultValidationSplit string = '0.1'

@description('SKU of the fine-tuned model deployment: Standard, GlobalStandard or Developer (cheapest to evaluate with).')
param defaultDeploymentSku string = 'Standard'
param defaultDeploymentCapacity int = 1

@description('Deployment of the base model an evaluation compares a candidate with (EVAL_BASELINE_DEPLOYMENT); empty: a run needs evaluation.compare_to or serve_as.')
param evalBaselineDeployment string = ''

@description('Deployment that answers score_model (judge) graders of an evaluation (EVAL_GRADER_DEPLOYMENT); empty for none.')
param evalGraderDeployment string = ''

@description('Price per million training tokens for the cost estimate in run records (a decimal string); empty for none.')
param pricePerMillionTrainingTokens string = ''

@description('Send one chat completion to a new deployment before calling the run done.')
param smokeTest bool = true

@secure()
@description('Receives a signed CloudEvent POST on each run state change; empty for none (needs notifyWebhookSecret).')
param notifyWebhookUrl string = ''

@secure()
@description('Standard Webhooks signing secret (whsec_ + base64 of 32 random bytes); required with notifyWebhookUrl.')
param notifyWebhookSecret string = ''

@description('Outbox queue of pending webhook / Event Grid deliveries (created here, with its -poison queue).')
param webhookOutboxQueueName string = 'fine-tuning-webhooks'

@description('Create an Event Grid custom topic (CloudEvents 1.0) that receives every run event.')
param createEventGridTopic bool = false

@description('Absolute path of a tiktoken cache shipped with the code (TIKTOKEN_CACHE_DIR); empty to let tiktoken download the encodings at first use.')
param tiktokenCacheDir string = ''

@description('More app settings (string values); applied after the ones above, so they override them.')
param extraAppSettings object = {}

param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40

// ---------------------------------------------------------------------------------------------- names
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var rgName = !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var blobTriggerFunctionName = 'ingest_dropped_file' // blueprints/ingest.py

var createAoai = createOpenAi || empty(openAiAccountName)
var aoaiName = !empty(openAiAccountName) ? openAiAccountName : 'oai-${resourceToken}'
var aoaiResourceGroupName = (createAoai || empty(openAiResourceGroupName)) ? rgName : openAiResourceGroupName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containerNames: [
      deploymentContainerName
      dropContainerName
      runsContainerName
      stagingContainerName
    ]
    queueNames: concat(
      [deployQueueName, submitQueueName, webhookOutboxQueueName, '${webhookOutboxQueueName}-poison'],
      empty(eventsQueueName) ? [] : [eventsQueueName]
    )
    systemTopicName: 'evgt-${resourceToken}'
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module eventGridTopic 'app/eventgrid-topic.bicep' = if (createEventGridTopic) {
  name: 'eventgrid-topic'
  scope: rg
  params: {
    name: 'evgt-runs-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module openAi 'app/openai.bicep' = if (createAoai) {
  name: 'openai'
  scope: rg
  params: {
    name: aoaiName
    location: !empty(openAiLocation) ? openAiLocation : location
    tags: tags
  }
}

module openAiAccess 'app/openai-access.bicep' = {
  name: 'openai-access-${resourceToken}'
  scope: resourceGroup(aoaiResourceGroupName)
  params: {
    accountName: aoaiName
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    useCustomDeploymentRole: useCustomDeploymentRole
  }
  dependsOn: [
    rg
    openAi
  ]
}

// The settings of shared/settings.py whose value here is this deployment's own (names, endpoints, the
// parameters above). The app reads them at import (the blob trigger's path is DROP_CONTAINER), so they must be
// app settings. Defaults stay in shared/settings.py alone (one source: tests/test_configuration.py fails on a
// copy), api-versions included: the client picks one per feature (shared/aoai/api_versions.py). Never
// AZURE_OPENAI_API_KEY or AZURE_MANAGEMENT_TOKEN: the app uses its managed identity for both planes.
var appSettings = union(
  {
    DROP_CONTAINER: dropContainerName
    RUNS_CONTAINER: runsContainerName
    STAGING_CONTAINER: stagingContainerName
    DEPLOY_QUEUE: deployQueueName
    SUBMIT_QUEUE: submitQueueName
    EVENTS_QUEUE: eventsQueueName
    WEBHOOK_OUTBOX_QUEUE: webhookOutboxQueueName
    BLOB_TRIGGER_SOURCE: 'EventGrid'
    TRAINING_POLL_SCHEDULE: trainingPollSchedule
    AZURE_OPENAI_ENDPOINT: openAiAccess.outputs.endpoint
    AZURE_OPENAI_API_SURFACE: openAiApiSurface
    AZURE_MANAGEMENT_ENDPOINT: environment().resourceManager
    AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
    AZURE_RESOURCE_GROUP: aoaiResourceGroupName
    AZURE_OPENAI_ACCOUNT_NAME: aoaiName
    DEFAULT_BASE_MODEL: defaultBaseModel
    DEFAULT_TRAINING_TYPE: defaultTrainingType
    DEFAULT_VALIDATION_SPLIT: defaultValidationSplit
    DEFAULT_DEPLOYMENT_SKU: defaultDeploymentSku
    DEFAULT_DEPLOYMENT_CAPACITY: string(defaultDeploymentCapacity)
    SMOKE_TEST: smokeTest ? 'true' : 'false'
  },
  empty(pricePerMillionTrainingTokens) ? {} : { PRICE_PER_MILLION_TRAINING_TOKENS: pricePerMillionTrainingTokens },
  empty(evalBaselineDeployment) ? {} : { EVAL_BASELINE_DEPLOYMENT: evalBaselineDeployment },
  empty(evalGraderDeployment) ? {} : { EVAL_GRADER_DEPLOYMENT: evalGraderDeployment },
  empty(tiktokenCacheDir) ? {} : { TIKTOKEN_CACHE_DIR: tiktokenCacheDir },
  createEventGridTopic ? { EVENT_GRID_TOPIC_ENDPOINT: eventGridTopic.outputs.endpoint } : {},
  extraAppSettings
)

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: appSettings
    notifyWebhookUrl: notifyWebhookUrl
    notifyWebhookSecret: notifyWebhookSecret
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

// ---------------------------------------------------------------------------------------------- outputs
// azd stores these in .azure/<env>/.env; the postdeploy hook and docs/deploy.md use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.name
output EVENTGRID_SYSTEM_TOPIC_NAME string = storage.outputs.systemTopicName
output EVENTGRID_RUNS_TOPIC_ENDPOINT string = createEventGridTopic ? eventGridTopic.outputs.endpoint : ''
output DASHBOARD_URL string = '${functionApp.outputs.uri}/api/dashboard'
output BLOB_TRIGGER_FUNCTION_NAME string = blobTriggerFunctionName
output DROP_CONTAINER_NAME string = dropContainerName
output RUNS_CONTAINER_NAME string = runsContainerName
// Not AZURE_OPENAI_*: outputs are written back into the azd environment, and those names are inputs.
output OPENAI_ACCOUNT_NAME string = aoaiName
output OPENAI_RESOURCE_GROUP string = aoaiResourceGroupName
output OPENAI_ENDPOINT string = openAiAccess.outputs.endpoint
