"""Library code shared by the function app: validation, the Azure OpenAI client, run state, metrics, gates."""
