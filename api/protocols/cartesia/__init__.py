"""Cartesia's text-to-speech dialect (/tts/websocket)."""
