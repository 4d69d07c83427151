"""Pronunciation dictionaries: PLS files read safely, rules checked, ownership, and the rules a request uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from processing.lexicon import AliasRule, DictionaryLocator
from services.errors import ServiceError
from services.pronunciation import PronunciationDictionaries, PronunciationError
from services.pronunciation.dictionaries import Owner
from services.pronunciation.pls import read_pls, write_pls
from services.pronunciation.stores import FileDictionaryStore

PLS = b"""<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" xml:lang="en-US">
  <lexeme><grapheme>UN</grapheme><alias>United Nations</alias></lexeme>
  <lexeme><grapheme>nginx</grapheme><grapheme>NGINX</grapheme><alias>engine x</alias></lexeme>
</lexicon>"""


def test_pls_aliases_are_read_case_sensitive_whole_words() -> None:
    assert read_pls(PLS) == [
        AliasRule("UN", "United Nations"),
        AliasRule("nginx", "engine x"),
        AliasRule("NGINX", "engine x"),
    ]


def test_pls_phoneme_is_refused_with_an_alias_hint() -> None:
    data = b"""<lexicon xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" version="1.0">
      <lexeme><grapheme>tomato</grapheme><phoneme>t\xc9\x99\xcb\x88m\xc9\x91\xcb\x90to\xca\x8a</phoneme></lexeme>
    </lexicon>"""
    with pytest.raises(PronunciationError, match="text only.*alias"):
        read_pls(data)


def test_pls_entity_bomb_is_refused_before_parsing() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lexicon [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<lexicon><lexeme><grapheme>x</grapheme><alias>&c;</alias></lexeme></lexicon>"""
    with pytest.raises(PronunciationError, match="entity declarations are not accepted"):
        read_pls(bomb)


def test_pls_external_entity_is_refused() -> None:
    data = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><lexicon><lexeme><grapheme>&e;</grapheme></lexeme></lexicon>'
    with pytest.raises(PronunciationError):
        read_pls(data)


@pytest.mark.parametrize(
    "data",
    [
        b"not xml",
        b"<lexicon></lexicon>",
        b"<root/>",
        b"\xff\xfe",
        b"<lexicon>" + b" " * (600 * 1024) + b"</lexicon>",
    ],
)
def test_bad_pls_files_are_refused(data: bytes) -> None:
    with pytest.raises(PronunciationError):
        read_pls(data)


def test_written_pls_reads_back() -> None:
    rules = (AliasRule("A&B", "A and B"), AliasRule("<x>", "ex"))
    assert tuple(read_pls(write_pls(rules).encode())) == rules


def _service(tmp_path: Path) -> PronunciationDictionaries:
    return PronunciationDictionaries(FileDictionaryStore(tmp_path))


def test_a_keys_dictionaries_are_its_own(tmp_path: Path) -> None:
    async def run() -> None:
        service = _service(tmp_path)
        alice, bob = Owner("alice"), Owner("bob")
        record = await service.create(alice, "Tech", [AliasRule("nginx", "engine x")], "terms")
        assert [r.dictionary_id for r in await service.list(alice)] == [record.dictionary_id]
        assert await service.list(bob) == []
        with pytest.raises(ServiceError) as refused:
            await service.get(bob, record.dictionary_id)
        assert refused.value.code == "NOT_FOUND"
        with pytest.raises(ServiceError):
            await service.lexicon_for([DictionaryLocator(record.dictionary_id)], "bob")
        with pytest.raises(ServiceError):
            await service.delete(bob, record.dictionary_id)
        lexicon = await service.lexicon_for(
            [DictionaryLocator(record.dictionary_id, record.version_id)], "alice"
        )
        assert lexicon.apply("Run nginx") == "Run engine x"
        with pytest.raises(ServiceError):  # a version it never had
            await service.lexicon_for([DictionaryLocator(record.dictionary_id, "x" * 20)], "alice")
        assert "<alias>engine x</alias>" in await service.pls(alice, record.dictionary_id, record.version_id)
        assert await service.list(Owner(None, admin=True))
        await service.delete(alice, record.dictionary_id)
        assert await service.list(alice) == []

    asyncio.run(run())


def test_a_later_rule_for_the_same_string_replaces_the_earlier(tmp_path: Path) -> None:
    async def run() -> None:
        record = await _service(tmp_path).create(
            Owner("k"), "d", [AliasRule("a", "one"), AliasRule("a", "two")]
        )
        assert record.rules == (AliasRule("a", "two"),)

    asyncio.run(run())


def test_empty_and_oversized_dictionaries_are_refused(tmp_path: Path) -> None:
    async def run() -> None:
        service = _service(tmp_path)
        with pytest.raises(PronunciationError, match="at least one rule"):
            await service.create(Owner("k"), "d", [])
        with pytest.raises(PronunciationError, match="name"):
            await service.create(Owner("k"), " ", [AliasRule("a", "b")])
        with pytest.raises(PronunciationError, match="at most"):
            await service.create(Owner("k"), "d", [AliasRule(f"w{i}", "b") for i in range(1001)])

    asyncio.run(run())
