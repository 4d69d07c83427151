"""The request path: one speech entry point, text planning, the synthesis pipeline, decode batching, audio output."""
