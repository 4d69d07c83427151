"""Pronunciation dictionaries with ownership: create (from rules or a PLS file), list, get, delete, download as
PLS, and the alias rules a request's locators name (the pipeline's `PronunciationLexicons`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from processing.lexicon import AliasRule, DictionaryLocator, Lexicon
from services.database import DatabaseClients
from services.pronunciation.pls import read_pls, write_pls
from services.pronunciation.records import (
    MAX_DESCRIPTION_CHARS,
    MAX_DICTIONARIES_PER_KEY,
    MAX_NAME_CHARS,
    DictionaryRecord,
    PronunciationError,
    checked_rules,
    is_dictionary_id,
    new_id,
    not_found,
)
from services.pronunciation.stores import DictionaryStore, build_dictionary_store
from shared.settings import Settings


@dataclass(frozen=True)
class Owner:
    """Who asks: one key (its own dictionaries), or the admin (`key_id` None: every dictionary)."""

    key_id: str | None
    admin: bool = False

    @property
    def filter(self) -> str | None:
        return None if self.admin else (self.key_id or "")


class PronunciationDictionaries:
    def __init__(self, store: DictionaryStore) -> None:
        self.store = store

    @classmethod
    def from_settings(
        cls, settings: Settings, databases: DatabaseClients | None = None
    ) -> PronunciationDictionaries:
        return cls(build_dictionary_store(settings, databases))

    async def create(
        self, owner: Owner, name: str, rules: list[AliasRule], description: str | None = None
    ) -> DictionaryRecord:
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise PronunciationError(
                f"Invalid 'name': 1 to {MAX_NAME_CHARS} characters, no control characters.", "name"
            )
        if description is not None and "\x00" in description:
            raise PronunciationError("Invalid 'description': it holds a NUL character.", "description")
        if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
            raise PronunciationError(
                f"Invalid 'description': at most {MAX_DESCRIPTION_CHARS} characters.", "description"
            )
        checked = checked_rules(rules)
        if not owner.admin and len(await self.store.list(owner.filter)) >= MAX_DICTIONARIES_PER_KEY:
            raise PronunciationError(
                f"This key holds {MAX_DICTIONARIES_PER_KEY} pronunciation dictionaries, the most it may; delete one first.",
                code="VOICE_LIMIT_REACHED",
            )
        record = DictionaryRecord(
            dictionary_id=new_id(),
            version_id=new_id(),
            owner_key_id=owner.key_id or "",
            name=name,
            description=description,
            rules=checked,
            created_at=time.time(),
        )
        await self.store.insert(record)
        return record

    async def create_from_pls(
        self, owner: Owner, name: str, data: bytes, description: str | None = None
    ) -> DictionaryRecord:
        return await self.create(owner, name, read_pls(data), description)

    async def get(self, owner: Owner, dictionary_id: str, param: str = "dictionary_id") -> DictionaryRecord:
        # An id no dictionary can have (a NUL PostgreSQL refuses, a path) is not found without a query.
        record = await self.store.get(dictionary_id) if is_dictionary_id(dictionary_id) else None
        if record is None or (owner.filter is not None and record.owner_key_id != owner.filter):
            raise not_found(dictionary_id, param)  # another key's: not found, as if it did not exist
        return record

    async def list(self, owner: Owner) -> list[DictionaryRecord]:
        return await self.store.list(owner.filter)

    async def delete(self, owner: Owner, dictionary_id: str) -> None:
        if not is_dictionary_id(dictionary_id) or not await self.store.delete(dictionary_id, owner.filter):
            raise not_found(dictionary_id, "dictionary_id")

    async def pls(self, owner: Owner, dictionary_id: str, version_id: str) -> str:
        record = await self.get(owner, dictionary_id)
        if record.version_id != version_id:
            raise not_found(f"{dictionary_id}/{version_id}", "version_id")
        return write_pls(record.rules)

    async def lexicon_for(self, locators: Sequence[DictionaryLocator], key_id: str | None) -> Lexicon:
        """The rules of the named dictionaries, in order; 404 for one the key does not own or an old version."""
        lexicon = Lexicon(())
        owner = Owner(key_id)
        for locator in locators:
            record = await self.get(owner, locator.dictionary_id, "pronunciation_dictionary_locators")
            if locator.version_id is not None and locator.version_id != record.version_id:
                raise not_found(
                    f"{locator.dictionary_id} version {locator.version_id}",
                    "pronunciation_dictionary_locators",
                )
            lexicon += Lexicon(record.rules)  # each version compiled once (processing/lexicon.py)
        return lexicon

    async def close(self) -> None:
        await self.store.close()
