"""ElevenLabs' text-to-speech dialect (multi-stream-input, stream-input, HTTP, voices)."""
