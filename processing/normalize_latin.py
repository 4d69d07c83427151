"""Spanish, French and German numbers: which Latin-script text is not English, and its number words.

The main pass (normalize.py) reads every Latin-script number with English words. Text around a number that is
Spanish, French or German ("Tengo 25 años", "Il a 25 ans", "Ich bin 25 Jahre alt") is read here instead:
plain numbers, decimals, negatives, percentages and euro amounts in that language's words (num2words); every
other token in such text (dates, times, phone numbers, fractions, URLs, abbreviations) is left as written by all
passes, so the model reads the digits rather than English words.

Detection. A short window around each number (the main pass's: ~60 characters each side, within its sentence)
is scored by function words only each language has ("el", "años", "und", "ist", "les", "dans", ...). It is
"es", "fr" or "de" when that language has at least two such words, more than twice the English ones and more than
each other candidate; otherwise the text stays English and nothing changes. A window with no listed word at all ("Am 3.")
takes the whole text's language. Why a word list rather than a library:
statistical detectors (langdetect, py3langid, lingua) are slower per call (about a millisecond, or a large model
in memory for lingua), are unsure on the few words around a number and can call short English text Spanish; a
word list costs microseconds, is deterministic, and only ever moves text away from English on clear evidence.
Text with fewer than two such words in all skips every step here.

Number formats in those languages: "1.000" and "1.000.000" group thousands, "3,5" has a decimal comma and
"3.5" a decimal point. "1,000" (a comma before exactly three digits) is ambiguous between them and stays as
written.
"""

from __future__ import annotations

import re
from functools import lru_cache

from num2words import num2words

__all__ = [
    "FOREIGN_LANGUAGES",
    "ForeignContext",
    "foreign_language",
    "has_foreign_words",
    "read_foreign_numbers",
]

FOREIGN_LANGUAGES = ("es", "fr", "de")

# Function words, leaving out those that are also common English words ("a", "in", "on", "me", "hat", "war").
_WORDS = {
    "es": "el la los las de del que y en un una es por con para tengo tiene tienen hay está están años año "
    "pero muy más mis su sus al lo se este esta estos cuesta cuestan unos unas también hasta desde "
    "cuando donde hoy sobre entre tiene fueron fue somos eres cerca después antes ayer mañana",
    "fr": "le la les des du de et est une un que qui dans pas avec sur il elle nous vous ans au aux "
    "ce cette mais très coûte coûtent je sont avons avez ont était sera ces leur leurs depuis environ "
    "aujourd hier demain chez entre après avant où",
    "de": "der die das und ist er ein eine einen einem einer nicht mit auf für ich wir sie dem des von zu "
    "es im habe haben jahre jahr sind kostet kosten auch aber noch oder ungefähr etwa heute gestern "
    "morgen nach vor zwischen seit bis wurde wird waren uhr",
    "en": "the and is are of to it that with for this was were have has i you we he she they at by from be "
    "my your his her years year old costs cost not but or an about after before since today",
}
_LEXICON = {lang: frozenset(words.split()) for lang, words in _WORDS.items()}
_FOREIGN_ONLY = (_LEXICON["es"] | _LEXICON["fr"] | _LEXICON["de"]) - _LEXICON["en"]
# A word standing alone: not a piece of an address, a file name or a URL ("x@y.io" holds no Spanish "y").
_WORD_RE = re.compile(r"(?<![\w@./:-])[a-zA-Z\u00c0-\u024f]+(?![\w@/:-]|\.\w)")
_SENTENCE_END = re.compile(r"[.!?।॥]\s")

_PERCENT = {"es": "por ciento", "fr": "pour cent", "de": "Prozent"}
_MINUS = {"es": "menos", "fr": "moins", "de": "minus"}
_POINT = {"es": "coma", "fr": "virgule", "de": "Komma"}  # the decimal separator as said
_EURO = {"es": ("euro", "euros"), "fr": ("euro", "euros"), "de": ("Euro", "Euro")}

# A number standing on its own: not part of a date, time, range, fraction, version, phone number or word.
_NUMBER_RE = re.compile(
    r"(?<![\w.,:/+-])(?:(?P<neg>-)(?=[0-9]))?"
    r"(?P<num>[0-9]{1,3}(?:\.[0-9]{3})+(?:,[0-9]+)?|[0-9]+,(?![0-9]{3}(?![0-9]))[0-9]+|[0-9]+(?:\.[0-9]+)?)"
    r"(?![\w:/]|[.,][0-9]|-[0-9])(?P<suffix>\s?%|\s?€)?"
)

# German writes ordinals with a full stop ("am 3. Mai"): a number before ". word" is left as written.
_GERMAN_ORDINAL = re.compile(r"\.\s+[^\W\d_]")


def has_foreign_words(text: str) -> bool:
    """Cheap first look: at least two words that only Spanish, French or German use."""
    count = 0
    for word in _WORD_RE.findall(text):
        if word.lower() in _FOREIGN_ONLY:
            count += 1
            if count >= 2:
                return True
    return False


def window(text: str, start: int, end: int) -> str:
    """The letters around text[start:end] that decide its language: ~60 characters each side, one sentence."""
    left = text[max(0, start - 60) : start]
    right = text[end : end + 60]
    last_end = max((c.end() for c in _SENTENCE_END.finditer(left)), default=0)
    first = _SENTENCE_END.search(right)
    if first is not None:
        right = right[: first.start() + 1]
    return left[last_end:] + " " + right


def _scores(text: str) -> dict[str, int]:
    scores = dict.fromkeys(_LEXICON, 0)
    for word in _WORD_RE.findall(text):
        lower = word.lower()
        for lang, words in _LEXICON.items():
            if lower in words:
                scores[lang] += 1
    return scores


def foreign_language(text: str) -> str | None:
    """ "es", "fr" or "de" when the function words say so clearly; None (English rules) otherwise."""
    return _decide(_scores(text))


def _decide(scores: dict[str, int]) -> str | None:
    scores = dict(scores)
    english = scores.pop("en")
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, score), (_, runner_up) = ranked[0], ranked[1]
    # More than twice the English words: names in English text ("El Paso del Norte") stay English.
    if score >= 2 and score > 2 * english and score > runner_up:
        return best
    return None


class ForeignContext:
    """The language of the window around a match; a window without any listed word takes the whole text's."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._whole: tuple[str | None] | None = None

    def lang_at(self, start: int, end: int) -> str | None:
        scores = _scores(window(self.text, start, end))
        if any(scores.values()):
            return _decide(scores)
        if self._whole is None:
            self._whole = (foreign_language(self.text),)
        return self._whole[0]


def _value(raw: str) -> tuple[str, str]:
    """(whole digits, fraction digits) of a number written the Spanish/French/German way."""
    if "," in raw:
        whole, _, frac = raw.partition(",")
        return whole.replace(".", ""), frac
    if re.fullmatch(r"[0-9]{1,3}(?:\.[0-9]{3})+", raw):
        return raw.replace(".", ""), ""
    whole, _, frac = raw.partition(".")
    return whole, frac


def _digits(digits: str, lang: str) -> str:
    return " ".join(num2words(int(d), lang=lang) for d in digits)


@lru_cache(maxsize=4096)  # num2words takes ~0.1 ms a call; the same numbers recur across requests
def number_words(raw: str, lang: str) -> str:
    """A number in `lang`'s words; codes with a leading zero and very long numbers digit by digit."""
    whole, frac = _value(raw)
    if len(whole) > 15 or (len(whole) > 1 and whole[0] == "0" and not frac):
        words = _digits(whole, lang)
    elif lang == "de" and not frac and 1100 <= int(whole) <= 1999:
        words = num2words(int(whole), lang=lang, to="year")  # "neunzehnhundert...": years and prices alike
    else:
        words = num2words(int(whole), lang=lang)
    if frac:
        words += f" {_POINT[lang]} {_digits(frac, lang)}"
    return words


def read_foreign_numbers(text: str, changes: list[tuple[str, str]]) -> str:
    """Numbers in Spanish, French or German text as words in that language; everything else untouched."""

    context = ForeignContext(text)

    def replace(m: re.Match[str]) -> str:
        lang = context.lang_at(m.start(), m.end())
        if lang is None or (lang == "de" and _GERMAN_ORDINAL.match(text, m.end())):
            return m.group(0)
        raw = m["num"]
        words = number_words(raw, lang)
        if m["neg"]:
            words = f"{_MINUS[lang]} {words}"
        suffix = (m["suffix"] or "").strip()
        if suffix == "%":
            words += " " + _PERCENT[lang]
        elif suffix == "€":
            one = _value(raw) == ("1", "")
            words += " " + _EURO[lang][0 if one else 1]
        changes.append((m.group(0), words))
        return words

    return _NUMBER_RE.sub(replace, text)
