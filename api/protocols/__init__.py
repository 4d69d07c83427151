"""Streaming dialects other than our own: each is a thin wire format (message models, event shapes, routes) over the
session core in services/sessions/."""
