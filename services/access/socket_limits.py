"""Limits on what one client can make a server do with sockets, so that no client slows the others.

  - `TokenBucket`: a rate with a burst; `take(cost)` answers at once, O(1), with no I/O.
  - `MessageLimiter`: one connection's messages per second and characters per second (two buckets), plus the
    largest single message, and optionally its key's message bucket shared by all the key's connections (so
    several sockets, or reconnecting, buy no more burst) and its address's part of that bucket. Checked before a
    message is parsed, so a refused message costs nothing more.
  - `KeyBuckets`: those shared buckets, one per API key, the least recently used forgotten past a capacity.
  - `AddressSlots`: how many sockets each client address holds (those not yet authenticated, and all of them),
    with a cap. Per process: each server (each Modal container) counts its own sockets; a shared count would put
    a network round trip in front of every handshake.

All take a `clock` so tests drive them with a fake one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


class TokenBucket:
    """`rate` tokens a second up to `burst`; starts full."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are that many (after refilling); False (and nothing spent) otherwise."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True

    @property
    def tokens(self) -> float:
        return self._tokens


@dataclass(frozen=True)
class MessageRefusal:
    """Why a message was refused: `kind` is "size" (one message too large) or "rate" (too many, or too much text,
    per second); `message` says so in words a client developer can act on."""

    kind: str
    message: str


class MessageLimiter:
    """One connection's budget: `messages_per_s` (burst `message_burst`) and `chars_per_s` of message text (burst
    `max_chars`, so the largest allowed message always fits a full bucket); a message over `max_chars` is refused
    outright. A rate of 0 turns that bucket off."""

    def __init__(
        self,
        *,
        messages_per_s: float,
        message_burst: int,
        chars_per_s: float,
        max_chars: int,
        clock: Callable[[], float] = time.monotonic,
        key_bucket: TokenBucket | None = None,
        address_bucket: TokenBucket | None = None,
    ) -> None:
        self.max_chars = max_chars
        # The client address's messages, checked before the key's: one address's connections together get a part of
        # the key's bucket, so its flood cannot empty the bucket other clients of the same key need (Wyoming).
        self.address_bucket = address_bucket
        self.key_bucket = key_bucket  # the key's messages, all its connections together (KeyBuckets)
        self.messages_per_s, self.chars_per_s = messages_per_s, chars_per_s
        self._messages = (
            TokenBucket(messages_per_s, max(1, message_burst), clock) if messages_per_s > 0 else None
        )
        self._chars = TokenBucket(chars_per_s, max(1, max_chars), clock) if chars_per_s > 0 else None
        self.refused: MessageRefusal | None = None  # the first refusal (the connection ends with it)

    def check(self, size: int) -> MessageRefusal | None:
        """Count one message of `size` characters; None when it may be handled."""
        refusal = self._verdict(size)
        if refusal is not None and self.refused is None:
            self.refused = refusal
        return refusal

    def _verdict(self, size: int) -> MessageRefusal | None:
        if self.max_chars and size > self.max_chars:
            return MessageRefusal(
                "size",
                f"A message may hold at most {self.max_chars} characters; this one held "
                f"{size}. Send long text in several messages.",
            )
        if self._messages is not None and not self._messages.take(1):
            return MessageRefusal(
                "rate",
                f"More than {self.messages_per_s:g} messages per second on this "
                "connection (after its burst allowance); send text in fewer, larger "
                "pieces.",
            )
        if self._chars is not None and not self._chars.take(size):
            return MessageRefusal(
                "rate",
                f"More than {self.chars_per_s:g} characters per second on this "
                "connection; send text at the pace it is produced.",
            )
        # The shared buckets, the address's part before the key's whole.
        for bucket, whose in ((self.address_bucket, "this address's"), (self.key_bucket, "this API key's")):
            if bucket is not None and not bucket.take(1):
                return MessageRefusal(
                    "rate",
                    f"More than {bucket.rate:g} messages per second on {whose} connections together (after "
                    "their burst allowance); send text in fewer, larger pieces.",
                )
        return None


class KeyBuckets:
    """One message bucket per API key, shared by all its connections on this server and kept across reconnects:
    `rate` a second up to `burst`. The least recently used past `capacity` is forgotten (it starts full again)."""

    def __init__(
        self, rate: float, burst: float, capacity: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.capacity, self._clock = rate, burst, capacity, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def of(self, key_id: str) -> TokenBucket:
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = TokenBucket(self.rate, self.burst, self._clock)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key_id)
        return bucket


class AddressSlots:
    """Sockets held per client address, capped (`cap` 0: counted, never refused). `enter` and `leave` pair up."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[str, int] = {}

    def enter(self, address: str) -> bool:
        """Take a slot for `address`; False (nothing taken) when it already holds `cap`."""
        held = self._held.get(address, 0)
        if self.cap and held >= self.cap:
            return False
        self._held[address] = held + 1
        return True

    def leave(self, address: str) -> None:
        left = self._held.get(address, 0) - 1
        if left > 0:
            self._held[address] = left
        else:
            self._held.pop(address, None)

    def held(self, address: str) -> int:
        return self._held.get(address, 0)

    def __len__(self) -> int:
        """Addresses holding at least one slot (the map never keeps an empty entry)."""
        return len(self._held)
