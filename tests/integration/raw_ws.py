"""A bare WebSocket client over asyncio streams, for hostile tests a polite client library cannot play: a reader
that stops reading (a tiny receive buffer, so the server's send buffer fills at once), frames written many per
system call, a message larger than the server accepts. Tests only.

    conn = await RawSocket.open("ws://127.0.0.1:8000/v1/tts/ws", {"Authorization": "Bearer k"}, rcvbuf=4096)
    conn.send_json({"type": "start", ...}); await conn.drain()
    code, texts = await conn.read_to_close(timeout_s=30)   # the server's close code (None: no close frame)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from urllib.parse import urlsplit


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked frame (a client must mask; an all-zero mask leaves the payload as it is)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str, headers: dict[str, str], *, rcvbuf: int | None = None) -> RawSocket:
        """Handshake (101 expected, else AssertionError with the answer's head). `rcvbuf`: a reader that will not
        read: the socket's receive buffer in bytes and this side's stream buffer as small, and a 536-byte segment
        size announced to the server. On loopback (64 KiB segments) Linux sizes the server's send buffer from the
        segment size to megabytes (a minute of 16 kHz audio); with 536-byte segments and a 4 KiB window about
        100 KiB is taken before the server's sends block, as on a real network."""
        where = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (where.hostname, where.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf or 2**16)
        path = where.path + (f"?{where.query}" if where.query else "")
        nonce = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {where.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {nonce}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise AssertionError(head.decode(errors="replace"))
        return cls(reader, writer)

    def send_json(self, message: dict) -> None:
        self.writer.write(client_frame(json.dumps(message).encode()))

    def send_text(self, text: str) -> None:
        self.writer.write(client_frame(text.encode()))

    async def drain(self) -> bool:
        """False once the server has gone (reset, broken pipe)."""
        try:
            await self.writer.drain()
        except ConnectionError:
            return False
        return not self.writer.transport.is_closing()

    async def read_to_close(self, timeout_s: float, *, pongs: bool = True) -> tuple[int | None, list[str]]:
        """Read every frame until the server's close frame or the end of the connection: (close code or None, the
        text frames seen). Pings are answered unless `pongs` is False (a client whose keepalive fails)."""
        texts: list[str] = []

        async def frames() -> int | None:
            while True:
                first, second = await self.reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    size = int.from_bytes(await self.reader.readexactly(2), "big")
                elif size == 127:
                    size = int.from_bytes(await self.reader.readexactly(8), "big")
                payload = await self.reader.readexactly(size)
                if first & 0x0F == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                if first & 0x0F == 0x1:
                    texts.append(payload.decode(errors="replace"))
                elif first & 0x0F == 0x9 and pongs:
                    self.writer.write(client_frame(payload, opcode=0xA))

        try:
            code = await asyncio.wait_for(frames(), timeout_s)
        except (asyncio.IncompleteReadError, ConnectionError):
            code = None
        self.writer.close()
        return code, texts
