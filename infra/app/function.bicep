// Flex Consumption plan + Python 3.11 function app. The code package lives in a blob container reached with
// the user-assigned identity; the host's storage connection (AzureWebJobsStorage) is identity-based too.

param name string
param planName string
param location string
param tags object

param identityId string
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param appInsightsConnectionString string

@description('The app\'s own settings (shared/settings.py), string values.')
param appSettings object

@secure()
@description('NOTIFY_WEBHOOK_URL: a secret, so kept out of the appSettings object and set only when given.')
param notifyWebhookUrl string = ''

@secure()
@description('NOTIFY_WEBHOOK_SECRET: the Standard Webhooks signing secret, set only when given.')
param notifyWebhookSecret string = ''

param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

var hostSettings = {
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AZURE_CLIENT_ID: identityClientId
}
var notifySettings = union(
  empty(notifyWebhookUrl) ? {} : { NOTIFY_WEBHOOK_URL: notifyWebhookUrl },
  empty(notifyWebhookSecret) ? {} : { NOTIFY_WEBHOOK_SECRET: notifyWebhookSecret }
)

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION here: the runtime is
  // functionAppConfig.runtime. Host settings go last so nothing in appSettings can override them.
  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, notifySettings, hostSettings)
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
