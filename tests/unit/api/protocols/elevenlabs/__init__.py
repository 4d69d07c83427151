"""Tests of api/protocols/elevenlabs."""
