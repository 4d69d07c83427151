"""ElevenLabs' refusal of a socket, in the shape it documents for the message sent before it closes one
(the SDK's `TextToDialogueWebsocketError`; its sockets answer `{"message", "error": "input_timeout_exceeded",
"code": 1008}`): a readable `message`, a machine-readable `error` id, the close `code` that follows, and `param`
when one field is at fault. Errors of a context inside a session are `responses.py`'s."""

from __future__ import annotations

import json
from typing import Any

from api.errors import ApiError
from api.protocols.elevenlabs.requests import ours_to_elevenlabs_message


def socket_refusal(err: ApiError, close_code: int) -> str:
    """The message refusing a connection (a key missing or wrong, a cap, an unknown voice), sent just before
    `close_code`."""
    body: dict[str, Any] = {
        "message": ours_to_elevenlabs_message(err.code, err.message),
        "error": err.code.lower(),
        "code": close_code,
    }
    if err.param is not None:
        body["param"] = err.param
    return json.dumps(body)
