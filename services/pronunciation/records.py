"""A stored pronunciation dictionary: its ids, owner, alias rules and the bounds on all of them."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from processing.lexicon import MAX_RULE_CHARS, AliasRule
from services.errors import ServiceError

MAX_RULES = 1000  # per dictionary
MAX_DICTIONARIES_PER_KEY = 100
MAX_NAME_CHARS = 128
MAX_DESCRIPTION_CHARS = 1000
MAX_PLS_BYTES = 512 * 1024  # under the JSON body limit (api/app.py), with the form around it
_ID = re.compile(r"[0-9A-Za-z]{20}")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class PronunciationError(ServiceError):
    """A refused dictionary or rule (400 VALIDATION_ERROR unless a code is given), naming the field."""

    def __init__(self, message: str, param: str | None = None, code: str = "VALIDATION_ERROR") -> None:
        super().__init__(code, message, param=param)


def new_id() -> str:
    """20 letters and digits, as ElevenLabs' dictionary and version ids look."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


def is_dictionary_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def not_found(dictionary_id: str, param: str = "pronunciation_dictionary_id") -> ServiceError:
    return ServiceError(
        "NOT_FOUND", f"Pronunciation dictionary '{dictionary_id}' was not found.", param=param
    )


PHONEME_REFUSAL = (
    "this model speaks text only and cannot follow phonemes; write the sound as an alias instead "
    '(e.g. {"type": "alias", "string_to_replace": "nginx", "alias": "engine x"})'
)


def checked_rule(text: str, alias: str, case_sensitive: bool, word_boundaries: bool, where: str) -> AliasRule:
    text, alias = text.strip(), " ".join(alias.split())
    if not text:
        raise PronunciationError(f"Invalid '{where}': the string to replace is empty.", where)
    for value, what in ((text, "string to replace"), (alias, "alias")):
        if len(value) > MAX_RULE_CHARS:
            raise PronunciationError(
                f"Invalid '{where}': the {what} is over {MAX_RULE_CHARS} characters.", where
            )
        if any(ord(c) < 32 for c in value):
            raise PronunciationError(f"Invalid '{where}': the {what} holds control characters.", where)
    return AliasRule(text, alias, case_sensitive, word_boundaries)


def checked_rules(rules: list[AliasRule]) -> tuple[AliasRule, ...]:
    if not rules:
        raise PronunciationError("Invalid 'rules': a dictionary needs at least one rule.", "rules")
    if len(rules) > MAX_RULES:
        raise PronunciationError(f"Invalid 'rules': at most {MAX_RULES} rules per dictionary.", "rules")
    # A later rule for the same string replaces an earlier one (as ElevenLabs' add-rules does).
    by_text: dict[str, AliasRule] = {}
    for rule in rules:
        by_text[rule.text] = rule
    return tuple(by_text.values())


@dataclass(frozen=True)
class DictionaryRecord:
    dictionary_id: str
    version_id: str
    owner_key_id: str  # "" on a server without keys
    name: str
    description: str | None
    rules: tuple[AliasRule, ...]
    created_at: float  # unix seconds

    def to_row(self) -> dict[str, Any]:
        return {
            "dictionary_id": self.dictionary_id,
            "version_id": self.version_id,
            "owner_key_id": self.owner_key_id,
            "name": self.name,
            "description": self.description,
            "rules": [
                {
                    "text": r.text,
                    "alias": r.alias,
                    "case_sensitive": r.case_sensitive,
                    "word_boundaries": r.word_boundaries,
                }
                for r in self.rules
            ],
            "created_at": self.created_at,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DictionaryRecord:
        return cls(
            dictionary_id=str(row["dictionary_id"]),
            version_id=str(row["version_id"]),
            owner_key_id=str(row["owner_key_id"]),
            name=str(row["name"]),
            description=row.get("description"),
            rules=tuple(
                AliasRule(
                    str(r["text"]), str(r["alias"]), bool(r["case_sensitive"]), bool(r["word_boundaries"])
                )
                for r in row["rules"]
            ),
            created_at=float(row["created_at"]),
        )

    def summary(self) -> dict[str, Any]:
        """ElevenLabs' fields for a dictionary (list and get)."""
        return {
            "id": self.dictionary_id,
            "latest_version_id": self.version_id,
            "latest_version_rules_num": len(self.rules),
            "name": self.name,
            "description": self.description,
            "created_by": self.owner_key_id or None,
            "creation_time_unix": int(self.created_at),
            "archived_time_unix": None,
            "permission_on_resource": "admin",
        }

    def created(self) -> dict[str, Any]:
        """ElevenLabs' answer to add-from-rules / add-from-file."""
        return {
            "id": self.dictionary_id,
            "name": self.name,
            "created_by": self.owner_key_id or None,
            "creation_time_unix": int(self.created_at),
            "version_id": self.version_id,
            "version_rules_num": len(self.rules),
            "description": self.description,
            "permission_on_resource": "admin",
        }
