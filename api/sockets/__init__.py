"""What every socket transport shares: the one connection loop (`loop.py`) the WebSocket dialects and Wyoming's TCP
connections run, each through a small transport (receive, send, close, peer) and its own parsing and refusals."""
