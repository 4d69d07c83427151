"""Which languages a text is written in, by script: Chinese (Han), Hindi (Devanagari), English (Latin).

A character-class scan, linear in the text. It names scripts, not languages proper: Latin text is reported
as English because that is the only Latin-script language the model reads here.
"""

from __future__ import annotations

import unicodedata

_ORDER = ("en", "hi", "zh")


def script_languages(text: str) -> list[str]:
    found: set[str] = set()
    for ch in text:
        if ch.isascii():
            if ch.isalpha():
                found.add("en")
            continue
        if "\u0900" <= ch <= "\u097f" or "\ua8e0" <= ch <= "\ua8ff":
            found.add("hi")
        elif "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "CJK" in unicodedata.name(ch, ""):
            found.add("zh")
        elif ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
            found.add("en")
    return [lang for lang in _ORDER if lang in found]
