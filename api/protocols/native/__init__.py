"""Our own API: `/v1/tts/*` HTTP routes, the `/v1/tts/ws` socket, voices and jobs."""
