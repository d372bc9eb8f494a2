// Role assignments on the Azure OpenAI account (new or existing), deployed in the account's resource group.
//   Cognitive Services OpenAI Contributor: data plane (files, fine-tuning jobs, the smoke-test chat call).
//   Cognitive Services Contributor, or the custom role below: ARM accounts/deployments write (deploying the
//   fine-tuned model). The custom role is narrower (no listKeys, no account changes) but creating it needs
//   Owner or User Access Administrator on this resource group.

param accountName string
param appPrincipalId string
param userPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param userPrincipalType string = 'User'
param useCustomDeploymentRole bool = false

var cognitiveServicesOpenAIContributor = 'a001fd3d-188f-4b5d-821b-7da978bf7442'
var cognitiveServicesContributor = '25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68'
var customRoleGuid = guid(subscription().id, resourceGroup().id, 'aoai-fine-tuning-deployments-writer')
var deploymentRoleGuid = useCustomDeploymentRole ? customRoleGuid : cognitiveServicesContributor

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: accountName
}

resource deploymentsWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (useCustomDeploymentRole) {
  name: customRoleGuid
  properties: {
    roleName: 'Azure OpenAI deployments writer (${resourceGroup().name}, ${take(subscription().subscriptionId, 8)})'
    description: 'Read the Azure OpenAI accounts of this resource group and create, update and delete their model deployments.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.CognitiveServices/accounts/read'
          'Microsoft.CognitiveServices/accounts/deployments/read'
          'Microsoft.CognitiveServices/accounts/deployments/write'
          'Microsoft.CognitiveServices/accounts/deployments/delete'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource appDataPlane 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, cognitiveServicesOpenAIContributor)
  scope: account
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAIContributor)
  }
}

resource appDeployments 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, deploymentRoleGuid)
  scope: account
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', deploymentRoleGuid)
  }
  dependsOn: [
    deploymentsWriter
  ]
}

// Lets the person who ran azd see files and jobs in Azure AI Foundry without keys.
resource userDataPlane 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(account.id, userPrincipalId, cognitiveServicesOpenAIContributor)
  scope: account
  properties: {
    principalId: userPrincipalId
    principalType: userPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAIContributor)
  }
}

output name string = account.name
output endpoint string = account.properties.endpoint
