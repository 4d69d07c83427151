"""PLS (W3C Pronunciation Lexicon Specification) files: read into alias rules, and written back for download.

Read safely with the standard library's parser: a document type declaration (the only place entities can be
declared, including the "billion laughs" kind and external ones) is refused before parsing, so only XML's five
predefined entities remain. A `<lexeme>` with `<alias>` becomes one rule per `<grapheme>`; one with only `<phoneme>`
is refused (this model speaks text only). As ElevenLabs documents, PLS rules are case-sensitive, whole words.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from processing.lexicon import AliasRule
from services.pronunciation.records import MAX_PLS_BYTES, PHONEME_REFUSAL, PronunciationError, checked_rule

_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.I)
PLS_NAMESPACE = "http://www.w3.org/2005/01/pronunciation-lexicon"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_pls(data: bytes, param: str = "file") -> list[AliasRule]:
    if len(data) > MAX_PLS_BYTES:
        raise PronunciationError(
            f"Invalid '{param}': a PLS file holds at most {MAX_PLS_BYTES // 1024} KiB.", param
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PronunciationError(f"Invalid '{param}': a PLS file is UTF-8 XML.", param) from None
    if _DECLARATION.search(text):
        raise PronunciationError(
            f"Invalid '{param}': document type and entity declarations are not accepted in a PLS file.", param
        )
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise PronunciationError(f"Invalid '{param}': not well-formed XML ({exc}).", param) from None
    if _local(root.tag) != "lexicon":
        raise PronunciationError(f"Invalid '{param}': a PLS file's root element is <lexicon>.", param)
    rules: list[AliasRule] = []
    for number, lexeme in enumerate((e for e in root if _local(e.tag) == "lexeme"), start=1):
        graphemes = [(e.text or "").strip() for e in lexeme if _local(e.tag) == "grapheme"]
        aliases = [" ".join((e.text or "").split()) for e in lexeme if _local(e.tag) == "alias"]
        where = f"{param}: lexeme {number}"
        if not aliases:
            if any(_local(e.tag) == "phoneme" for e in lexeme):
                raise PronunciationError(
                    f"Invalid '{where}' ({', '.join(graphemes)}): {PHONEME_REFUSAL}.", param
                )
            raise PronunciationError(f"Invalid '{where}': a lexeme needs an <alias>.", param)
        if not graphemes:
            raise PronunciationError(f"Invalid '{where}': a lexeme needs a <grapheme>.", param)
        rules += [checked_rule(g, aliases[0], True, True, where) for g in graphemes]
    if not rules:
        raise PronunciationError(f"Invalid '{param}': the PLS file holds no <lexeme>.", param)
    return rules


def write_pls(rules: tuple[AliasRule, ...], language: str = "en-US") -> str:
    """The rules as a PLS document (case and word-boundary options have no PLS form: PLS matches whole words,
    case-sensitively)."""
    lexemes = "".join(
        f"  <lexeme>\n    <grapheme>{escape(r.text)}</grapheme>\n    <alias>{escape(r.alias)}</alias>\n  </lexeme>\n"
        for r in rules
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<lexicon version="1.0" xmlns="{PLS_NAMESPACE}" alphabet="ipa" xml:lang="{escape(language)}">\n'
        f"{lexemes}</lexicon>\n"
    )
