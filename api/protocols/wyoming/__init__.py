"""The Wyoming protocol edge (Home Assistant's voice protocol): a TCP server beside the HTTP app, on its services.

server.py listens and answers `describe`; handler.py serves one connection through a streaming session; responses.py
writes the session's events as Wyoming events. Guide: docs/guides/home-assistant.md.
"""

from api.protocols.wyoming.server import WyomingConfigError, WyomingServer, check_settings

__all__ = ["WyomingConfigError", "WyomingServer", "check_settings"]
