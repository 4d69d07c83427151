"""OpenAI's speech API: `POST /v1/audio/speech` and the model list."""
