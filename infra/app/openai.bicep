// A new Azure OpenAI account (only when no existing one is given). Keys are disabled: the app and people
// use Microsoft Entra ID. Fine-tuning is offered in a few regions only: pick `openAiLocation` accordingly.

param name string
param location string
param tags object

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name // required for Microsoft Entra ID auth
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output name string = account.name
