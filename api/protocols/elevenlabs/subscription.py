"""`GET /v1/user/subscription` in ElevenLabs' shape (`client.user.subscription.get()`), from the calling key's own view
(GET /v1/tts/key): the character limit is the key's credit balance (1 credit = 1 character) and the count 0, so
limit - count is what the key can still speak; an unlimited key reports the largest 32-bit limit. Voice slots
report this server's custom-voice cap."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.service.keys import own_key

router = APIRouter(tags=["elevenlabs"])
UNLIMITED_CHARACTERS = 2**31 - 1


@router.get("/v1/user/subscription", summary="The calling key's credits as ElevenLabs' subscription")
async def subscription(request: Request) -> JSONResponse:
    own = await own_key(request)
    balance = own["credit_balance"]
    limit = UNLIMITED_CHARACTERS if balance is None or not own["credits_enabled"] else balance
    voices = request.app.state.services.settings.voices
    return JSONResponse(
        {
            "tier": "spark-tts",
            "character_count": 0,
            "character_limit": limit,
            "max_character_limit_extension": None,
            "max_credit_limit_extension": 0,
            "can_extend_character_limit": False,
            "allowed_to_extend_character_limit": False,
            "next_character_count_reset_unix": None,
            "voice_slots_used": 0,
            "professional_voice_slots_used": 0,
            "professional_voice_slots_used_in_workspace": 0,
            "voice_limit": voices.voice_library_max_per_key,
            "max_voice_add_edits": None,
            "voice_add_edit_counter": 0,
            "professional_voice_limit": 0,
            "can_extend_voice_limit": False,
            "can_use_instant_voice_cloning": True,
            "can_use_professional_voice_cloning": False,
            "currency": None,
            "current_overage": {"amount": "0", "currency": "usd"},
            "status": "active" if own["status"] == "active" else "free_disabled",
            "billing_period": None,
            "character_refresh_period": None,
            "next_invoice": None,
            "open_invoices": [],
            "has_open_invoices": False,
        }
    )
