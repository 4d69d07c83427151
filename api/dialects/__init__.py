"""Streaming dialects other than our own: each is a thin codec (message models, event shapes, routes) over the
session core in services/sessions/."""
