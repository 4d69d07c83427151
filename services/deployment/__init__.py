"""Deployment: the model runtime, the Modal container lifecycle, image pins, GPU health and operator commands."""
