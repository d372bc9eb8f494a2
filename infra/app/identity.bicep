// The app's user-assigned managed identity: host storage (AzureWebJobsStorage__clientId), Application
// Insights, and the app's own calls (AZURE_CLIENT_ID) all use it.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
