"""Streaming sessions: text that arrives in pieces over a WebSocket in, ordered audio frames and events out."""
