// Optional: an Event Grid custom topic that receives every run event (CloudEvents 1.0 input schema), so other
// Azure systems can subscribe to runs the way they subscribe to any Azure event. Keys are off: the app
// publishes with its managed identity (EventGrid Data Sender on this topic).

param name string
param location string
param tags object
param appPrincipalId string

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, appPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = topic.name
output endpoint string = topic.properties.endpoint
