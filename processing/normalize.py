"""Text normalisation for English and Hindi: what the speech model should *say*.

`normalize_text(text)` rewrites numbers, money, percentages, dates, times, ordinals, units and
common abbreviations into words, straightens fancy quotes and tidies punctuation and whitespace.

Language. Latin-script words are English and Devanagari words Hindi; other scripts (Telugu,
Arabic, emoji, ...) pass through untouched. Latin-script text that is clearly Spanish, French or German has its
numbers read in that language and its other tokens left as written (normalize_latin.py). A number is read in the language of the letters
around it (the nearest ~60 characters within its sentence, then the whole text); a caller may
force it with `language="en"` / `"hi"`. The result's `language` is "en", "hi" or "mixed" (both
scripts present); text with neither script reports the forced language or "en".

Readings (see numbers_en / numbers_hi):
- "20,000" -> "twenty thousand" / "बीस हज़ार". English uses thousand / million / billion unless
  the number was written with Indian grouping ("1,00,000" -> "one lakh"); Hindi always uses
  हज़ार / लाख / करोड़.
- Ungrouped integers of more than 9 digits and integers with a leading zero ("007", phone
  numbers) are read digit by digit; decimals read their fraction digit by digit.
- Dates are day-first when numeric ("15/03/2024"); English says "March fifteenth, twenty
  twenty-four", Hindi "पंद्रह मार्च दो हज़ार चौबीस" (month names and date words: normalize_dates.py).
- A bare 4-digit number is read as a year only after a cue word (in, since, by, सन्, ...) or
  before AD/BC.

Markdown as LLMs write it is read first (emphasis, links, headings, lists, code; processing/markdown.py) and
emoji are dropped.

Tag-shaped tokens (`[excited]`, `<calm>`, see processing.tags) are never altered. The function is a
single regex pass plus a few character passes: about a millisecond per sentence, and it never
raises on any input string.

Longer than 500 lines because every reading (numbers, money, dates, units) shares one pass over the text with
its language context; the number words themselves live in numbers_en.py and numbers_hi.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from processing import numbers_en as en
from processing import numbers_hi as hi
from processing.markdown import drop_emoji, read_markdown
from processing.normalize_dates import MONTH_EN_RE, MONTH_HI_RE, MONTH_LOOKUP, MONTHS_EN, date_words
from processing.normalize_latin import ForeignContext, has_foreign_words, read_foreign_numbers, window
from processing.normalize_symbols import normalize_symbols
from processing.normalize_zh import normalize_chinese
from processing.tags import TAG_RE

__all__ = ["NormalizationResult", "normalize_text", "detect_language"]

LANGUAGES = ("en", "hi")

# ------------------------------------------------------------------------------------------
# Character classes (ASCII digits only: \d would also match Telugu or Arabic digits).
_DEV_LETTER = "\u0900-\u0963\u0971-\u097f\ua8e0-\ua8ff"  # Devanagari without danda and digits
_LATIN_LETTER = "A-Za-z\u00c0-\u024f"
_DEV_RE = re.compile(f"[{_DEV_LETTER}]")
_LATIN_RE = re.compile(f"[{_LATIN_LETTER}]")
_LETTER_ANY = re.compile(r"[^\W\d_]")  # any script's letter, for "glued to a word" checks


@dataclass(slots=True)
class NormalizationResult:
    text: str
    language: str  # "en", "hi" or "mixed"
    changes: list[tuple[str, str]] = field(default_factory=list)  # (original, replacement), in order


# ------------------------------------------------------------------------------------------
# Character clean-up: done first, so the patterns below see plain ASCII punctuation.
_CHAR_MAP = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a\u0060\u00b4\uff07", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u301d\u301e\uff02", '"'),
    "\u2026": "...",
    "\u2212": "-",  # minus sign
    "\u2010": "-",
    "\u2011": "-",
    "\u2015": "\u2014",
    **dict.fromkeys("\u200b\u2060\ufeff\u00ad", ""),  # zero-width space, word joiner, BOM, soft hyphen
    **{d: str(i) for i, d in enumerate("०१२३४५६७८९")},  # Devanagari digits are read like ASCII ones
    # Precomposed nukta letters (क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़) -> their canonical (NFC) two-code-point form.
    **{chr(c): unicodedata.normalize("NFC", chr(c)) for c in range(0x958, 0x960)},
}
_CHAR_RE = re.compile("[" + re.escape("".join(_CHAR_MAP)) + "]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]+")
_WS_RE = re.compile(r"[\s\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


def _repeat_punct(m: re.Match[str]) -> str:
    run = m.group(0)
    if run[0] in "!?":
        return "?" if "?" in run else "!"
    if run[0] == ".":
        return "..." if len(run) >= 3 else "."
    if run[0] == "-":
        return "\u2014"
    return run[0]


_REPEAT_RE = re.compile(r"[!?]{2,}|\.{2,}|,{2,}|;{2,}|:{2,}|-{2,}")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+(?=[,.!?;:।॥](?:\s|$))")

# ------------------------------------------------------------------------------------------
# The token patterns. One master regex, alternatives in priority order.
_NUM = r"(?:[0-9]{1,2}(?:,[0-9]{2})+,[0-9]{3}|[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?"
_NB = r"(?<![0-9])"  # not preceded by a digit
_NA = r"(?![0-9])"  # not followed by a digit
_NOT_WORD_BEFORE = rf"(?<![0-9{_LATIN_LETTER}{_DEV_LETTER}])"

_EN_ORD_SUFFIX = r"(?:st|nd|rd|th)"

# Currency: symbol/code -> (en singular, en plural, en minor sg, en minor pl, hi, hi plural, hi minor sg, hi minor pl)
_CURRENCIES = {
    "inr": ("rupee", "rupees", "paisa", "paise", "रुपया", "रुपये", "पैसा", "पैसे"),
    "usd": ("dollar", "dollars", "cent", "cents", "डॉलर", "डॉलर", "सेंट", "सेंट"),
    "eur": ("euro", "euros", "cent", "cents", "यूरो", "यूरो", "सेंट", "सेंट"),
    "gbp": ("pound", "pounds", "penny", "pence", "पाउंड", "पाउंड", "पेंस", "पेंस"),
}
_CURRENCY_KEYS = {
    "₹": "inr", "rs": "inr", "rs.": "inr", "inr": "inr", "रु": "inr", "रु.": "inr", "रू": "inr", "रू.": "inr",
    "$": "usd", "us$": "usd", "usd": "usd", "€": "eur", "eur": "eur", "£": "gbp", "gbp": "gbp",
}  # fmt: skip
_CURRENCY_RE = r"(?:₹|US\$|\$|€|£|\b(?:Rs\.?|INR|USD|EUR|GBP)|(?<![" + _DEV_LETTER + r"])र[ुू]\.?)"
# Scale words after an amount ("₹5 lakh", "$2 bn"): word -> (en word, hi word)
_AMOUNT_SCALES = {
    "thousand": ("thousand", "हज़ार"), "k": ("thousand", "हज़ार"), "हज़ार": ("thousand", "हज़ार"),
    "हजार": ("thousand", "हज़ार"), "lakh": ("lakh", "लाख"), "lakhs": ("lakh", "लाख"), "lac": ("lakh", "लाख"),
    "लाख": ("lakh", "लाख"), "crore": ("crore", "करोड़"), "crores": ("crore", "करोड़"), "cr": ("crore", "करोड़"),
    "करोड़": ("crore", "करोड़"), "करोड": ("crore", "करोड़"), "million": ("million", "मिलियन"),
    "mn": ("million", "मिलियन"), "billion": ("billion", "बिलियन"), "bn": ("billion", "बिलियन"),
    "trillion": ("trillion", "ट्रिलियन"),
}  # fmt: skip
_SCALE_RE = (
    r"(?:(?i:thousand|lakhs|lakh|lac|crores|crore|cr|million|mn|billion|bn|trillion|k)(?![A-Za-z])"
    r"|(?:हज़ार|हजार|लाख|करोड़|करोड)(?![" + _DEV_LETTER + r"]))"
)

# Units after a number: key -> (en singular, en plural, hi)
_UNITS = {
    "km": ("kilometre", "kilometres", "किलोमीटर"), "kms": ("kilometre", "kilometres", "किलोमीटर"),
    "किमी": ("kilometre", "kilometres", "किलोमीटर"), "kg": ("kilogram", "kilograms", "किलोग्राम"),
    "kgs": ("kilogram", "kilograms", "किलोग्राम"), "किग्रा": ("kilogram", "kilograms", "किलोग्राम"),
    "mg": ("milligram", "milligrams", "मिलीग्राम"), "gm": ("gram", "grams", "ग्राम"),
    "cm": ("centimetre", "centimetres", "सेंटीमीटर"), "mm": ("millimetre", "millimetres", "मिलीमीटर"),
    "ml": ("millilitre", "millilitres", "मिलीलीटर"), "km/h": ("kilometre per hour", "kilometres per hour",
    "किलोमीटर प्रति घंटा"), "kmph": ("kilometre per hour", "kilometres per hour", "किलोमीटर प्रति घंटा"),
    "mph": ("mile per hour", "miles per hour", "मील प्रति घंटा"), "°c": ("degree Celsius", "degrees Celsius",
    "डिग्री सेल्सियस"), "°f": ("degree Fahrenheit", "degrees Fahrenheit", "डिग्री फ़ारेनहाइट"),
    "°": ("degree", "degrees", "डिग्री"), "kb": ("kilobyte", "kilobytes", "किलोबाइट"),
    "mb": ("megabyte", "megabytes", "मेगाबाइट"), "gb": ("gigabyte", "gigabytes", "गीगाबाइट"),
    "tb": ("terabyte", "terabytes", "टेराबाइट"), "hz": ("hertz", "hertz", "हर्ट्ज़"),
    "khz": ("kilohertz", "kilohertz", "किलोहर्ट्ज़"), "mhz": ("megahertz", "megahertz", "मेगाहर्ट्ज़"),
    "ghz": ("gigahertz", "gigahertz", "गीगाहर्ट्ज़"), "hrs": ("hour", "hours", "घंटे"),
    "hr": ("hour", "hours", "घंटे"), "mins": ("minute", "minutes", "मिनट"), "min": ("minute", "minutes", "मिनट"),
    "secs": ("second", "seconds", "सेकंड"), "sec": ("second", "seconds", "सेकंड"),
}  # fmt: skip
_UNIT_RE = (
    r"(?:(?i:km/h|kmph|kms|km|kgs|kg|mg|gm|cm|mm|ml|mph|kb|mb|gb|tb|khz|mhz|ghz|hz|hrs|hr|mins|min|secs|sec)"
    r"(?![A-Za-z0-9])|°[CcFf]?(?![A-Za-z])|(?:किमी|किग्रा)(?![" + _DEV_LETTER + r"]))"
)

# Hindi ordinal suffixes written after digits: 1ला, 2री, 5वाँ, 10वीं ... -> grammatical form.
_HI_ORD_SUFFIX = {
    "ला": "m", "ली": "f", "ले": "o", "रा": "m", "री": "f", "रे": "o", "था": "m", "थी": "f", "थे": "o",
    "ठा": "m", "ठी": "f", "ठे": "o", "वाँ": "m", "वां": "m", "वा": "m", "वीं": "f", "वी": "f", "वें": "o", "वे": "o",
}  # fmt: skip
_HI_ORD_RE = "(?:" + "|".join(sorted(_HI_ORD_SUFFIX, key=len, reverse=True)) + ")(?![" + _DEV_LETTER + "])"


def _ampm(prefix: str) -> str:
    """AM / PM in its spellings (am, a.m., AM); a group name prefix keeps the master regex's names unique."""
    return rf"(?P<{prefix}ap>[AaPp])\.?[Mm](?P<{prefix}apdot>\.)?(?![A-Za-z])"


# Abbreviations (Latin, case-sensitive). Titles are always followed by a name: the dot just goes.
_TITLES = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor", "Capt": "Captain", "Lt": "Lieutenant",
    "Sgt": "Sergeant", "Supt": "Superintendent", "Insp": "Inspector",
}  # fmt: skip
# Titles that are also ordinary words' abbreviations: expanded only before a capitalised name.
_NAME_TITLES = {
    "Col": "Colonel", "Gen": "General", "Rev": "Reverend", "Hon": "Honourable", "Mt": "Mount", "Gov": "Governor",
}  # fmt: skip
# These may end a sentence: when they do, the full stop is kept after the expansion.
_ABBREVIATIONS = {
    "etc": "et cetera", "vs": "versus", "approx": "approximately", "Inc": "Incorporated", "Ltd": "Limited",
    "Co": "Company", "Jr": "Junior", "Sr": "Senior", "Dept": "Department", "Govt": "Government",
    "Univ": "University", "Ave": "Avenue", "Rd": "Road", "Blvd": "Boulevard",
}  # fmt: skip
_HI_ABBREVIATIONS = {"डॉ.": "डॉक्टर", "प्रो.": "प्रोफ़ेसर", "कि.मी.": "किलोमीटर", "कि.ग्रा.": "किलोग्राम"}
_ABBR_RE = (
    r"(?<![A-Za-z.])(?:(?P<eg>e\.g\.|E\.g\.|i\.e\.|I\.e\.)"
    r"|(?P<title>" + "|".join(_TITLES) + r")\.(?=\s)"
    r"|(?P<ntitle>" + "|".join(_NAME_TITLES) + r")\.(?=\s+[A-Z])"
    r"|(?P<dr>Dr|St)\.(?=\s|$)"
    r"|(?P<abbr>" + "|".join(_ABBREVIATIONS) + r")\.(?=\s|$|[,;:!?)])"
    r"|(?P<vs>vs)(?=\s)"
    r"|(?P<unitword>km|kg|kms|kgs)(?![A-Za-z]))"
    r"|(?<![" + _DEV_LETTER + r"])(?P<hiabbr>" + "|".join(re.escape(k) for k in _HI_ABBREVIATIONS) + r")"
)

_MASTER_RE = re.compile(
    "|".join(
        (
            # 2024-03-15
            rf"(?P<iso>{_NB}(?P<iso_y>[0-9]{{4}})-(?P<iso_m>[0-9]{{1,2}})-(?P<iso_d>[0-9]{{1,2}}){_NA})",
            # 15/03/2024, 15-03-2024, 15.03.2024 (day first)
            rf"(?P<dmy>{_NB}(?<![0-9][./-])(?P<dmy_d>[0-9]{{1,2}})(?P<sep>[./-])(?P<dmy_m>[0-9]{{1,2}})(?P=sep)"
            rf"(?P<dmy_y>[0-9]{{4}}){_NA}(?![./-][0-9]))",
            # March 15, 2024 / Mar. 15 / March 15th 2024
            rf"(?P<mdy>(?<![A-Za-z])(?P<mdy_m>{MONTH_EN_RE})\s+(?P<mdy_d>[0-9]{{1,2}}){_EN_ORD_SUFFIX}?{_NA}"
            rf"(?:,?\s+(?P<mdy_y>[0-9]{{4}}){_NA})?(?![A-Za-z0-9]))",
            # 15 March 2024 / 15th of March / 15 मार्च 2024
            rf"(?P<dmonth>{_NB}(?P<dm_d>[0-9]{{1,2}})(?P<dm_suf>{_EN_ORD_SUFFIX})?\s+(?P<dm_of>of\s+)?"
            rf"(?P<dm_m>{MONTH_EN_RE}(?![A-Za-z])|{MONTH_HI_RE}(?![{_DEV_LETTER}]))"
            rf"(?:,?\s+(?P<dm_y>[0-9]{{4}}){_NA})?)",
            # 10:30, 10:30:15, 10:30 AM
            rf"(?P<time>{_NB}(?<![0-9][:.])(?P<t_h>[0-9]{{1,2}}):(?P<t_m>[0-9]{{2}})(?::(?P<t_s>[0-9]{{2}}))?"
            rf"(?![0-9]|:[0-9])(?:\s?{_ampm('t_')})?(?P<t_baje>\s?बजे(?![{_DEV_LETTER}]))?)",
            # 5 pm, 11am
            rf"(?P<hour>{_NB}(?<![0-9][:.,])(?P<h_h>[0-9]{{1,2}})\s?{_ampm('h_')})",
            # ₹1,500.50 / Rs. 500 / $2.5 million / रु 100
            rf"(?P<money>(?P<cur>{_CURRENCY_RE})\s?(?P<m_num>{_NUM}){_NA}(?:\s?(?P<m_scale>{_SCALE_RE}))?(?:/-)?)",
            # 50%, 12.5 %
            rf"(?P<pct>{_NOT_WORD_BEFORE}(?P<p_neg>-)?(?P<p_num>{_NUM}){_NA}\s?%)",
            # 5 km, 10kg, 37°C
            rf"(?P<unit>{_NOT_WORD_BEFORE}(?P<u_neg>-)?(?P<u_num>{_NUM}){_NA}\s?(?P<u_unit>{_UNIT_RE}))",
            # 1st, 22nd / 1ला, 5वाँ, 10वीं
            rf"(?P<ord>{_NB}(?P<o_num>[0-9]{{1,9}})(?:(?P<o_en>{_EN_ORD_SUFFIX})(?![A-Za-z])|(?P<o_hi>{_HI_ORD_RE})))",
            # 1990s
            rf"(?P<decade>{_NB}(?P<dec_y>1[0-9]{{2}}0|20[0-9]0)s(?![A-Za-z]))",
            # 10–20 (en/em dash, spaces allowed), 10-20 (hyphen: short numbers, no spaces), 5-10%
            rf"(?P<range>{_NOT_WORD_BEFORE}(?:(?P<r_a>{_NUM}){_NA}\s?[\u2013\u2014]\s?(?P<r_b>{_NUM})"
            rf"|(?P<r_ha>[0-9]{{1,4}})-(?P<r_hb>[0-9]{{1,4}})){_NA}(?![.,:/-][0-9])(?P<r_pct>\s?%)?)",
            # #5
            r"(?P<hash>#(?=[0-9]))",
            # -12.5, 20,000, 1,00,000, 3.14, 007
            rf"(?P<num>{_NB}(?P<n_sign>(?<![0-9{_LATIN_LETTER}{_DEV_LETTER}.,])[-+](?=[0-9]))?"
            rf"(?P<n_num>{_NUM}){_NA})",
            # Dr. Mr. etc. e.g. / डॉ.
            rf"(?P<abbrs>{_ABBR_RE})",
            # No. 5
            r"(?P<no>(?<![A-Za-z])No\.(?=\s?[0-9]))",
            # " & "
            r"(?P<amp>(?<=\s)&(?=\s))",
        )
    )
)

_YEAR_CUE_EN = re.compile(
    r"(?:\b(?:in|since|from|year|by|until|till|before|after|during|circa|of|to|and|or|"
    + "|".join(MONTHS_EN)
    + r")\s+)$",
    re.IGNORECASE,
)
_YEAR_CUE_HI = re.compile(
    r"(?:(?:सन्|सन|वर्ष|साल|ईस्वी|" + "|".join(k for k in MONTH_LOOKUP if not k.isascii()) + r")\s+)$"
)
_DIGITS_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_YEAR_AFTER = re.compile(r"\s?(?:AD|BC|BCE|CE|A\.D\.|B\.C\.|ई\.|ईस्वी)(?![A-Za-z])")


# ------------------------------------------------------------------------------------------
def _hi_half_past(h: int) -> str:
    return {1: "डेढ़", 2: "ढाई"}.get(h) or "साढ़े " + hi.cardinal(h)


# Hindi clock fractions before बजे: सवा (quarter past), साढ़े (half past), पौने (quarter to).
_HI_QUARTERS: dict[int, Callable[[int], str]] = {
    0: hi.cardinal,
    15: lambda h: "सवा " + hi.cardinal(h),
    30: _hi_half_past,
    45: lambda h: "पौने " + hi.cardinal(h % 12 + 1 if h <= 12 else h + 1),
}


class _DigitsAndYears(Protocol):
    """What the reader uses of the numbers_en and numbers_hi modules, which both provide it."""

    def digits(self, s: str) -> str: ...

    def year(self, y: int) -> str: ...


class _Reader:
    """Number reading in one language; the English and Hindi readers share this interface."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.mod: _DigitsAndYears = hi if lang == "hi" else en

    def integer(self, raw: str, spoken_digits_ok: bool = True) -> str:
        """A (possibly comma-grouped) integer string. Codes and phone numbers are read digit by digit."""
        plain = raw.replace(",", "")
        if len(plain) > 15:  # also keeps int() away from huge digit strings
            return self.mod.digits(plain)
        if spoken_digits_ok and "," not in raw and len(plain) > 1 and (plain[0] == "0" or len(plain) > 9):
            return self.mod.digits(plain)
        if self.lang == "hi":
            return hi.cardinal(int(plain))
        return en.cardinal(int(plain), indian=_indian_grouped(raw))

    def number(self, raw: str) -> str:
        """Integer or decimal."""
        whole, dot, frac = raw.partition(".")
        if not dot:
            return self.integer(whole)
        whole_words = self.integer(whole, spoken_digits_ok=False) if whole else self.mod.digits("0")
        point = hi.POINT if self.lang == "hi" else "point"
        return f"{whole_words} {point} {self.mod.digits(frac)}"

    def minus(self) -> str:
        return hi.MINUS if self.lang == "hi" else "minus"

    def ordinal(self, n: int, form: str = "m") -> str:
        return hi.ordinal(n, form) if self.lang == "hi" else en.ordinal(n)

    def year(self, y: int) -> str:
        return self.mod.year(y)


def _indian_grouped(raw: str) -> bool:
    groups = raw.split(",")
    return len(groups) >= 3 and all(len(g) == 2 for g in groups[1:-1])


def _is_one(raw: str) -> bool:
    return raw.replace(",", "") in ("1", "01")


# ------------------------------------------------------------------------------------------
def _letter_counts(s: str) -> tuple[int, int]:
    """(Devanagari letters, Latin letters) in s, ignoring tag-shaped tokens."""
    if "[" in s or "<" in s:
        s = TAG_RE.sub(" ", s)
    return len(_DEV_RE.findall(s)), len(_LATIN_RE.findall(s))


def detect_language(text: str) -> str:
    """ "hi", "en" or "mixed" from the scripts present; "en" when neither script is present."""
    dev, lat = _letter_counts(text)
    if dev and lat:
        return "mixed"
    return "hi" if dev else "en"


class _Context:
    """Chooses the reading language for a match from the letters around it."""

    def __init__(self, text: str, forced: str | None) -> None:
        self.text = text
        self.forced = forced
        dev, lat = _letter_counts(text)
        self.default = forced or ("hi" if dev > lat else "en")

    def lang_at(self, start: int, end: int) -> str:
        if self.forced:
            return self.forced
        dev, lat = _letter_counts(window(self.text, start, end))
        if dev == lat:
            return self.default
        return "hi" if dev > lat else "en"


def _sentence_end_follows(text: str, end: int) -> bool:
    """True when the text after `end` starts a new sentence (end of text or a capital letter)."""
    rest = text[end : end + 3]
    return rest.strip() == "" or bool(re.match(r"\s+[\"']?[A-Z\u0900-\u097f]", rest))


def _glue(text: str, start: int, end: int, words: str) -> str:
    """Pad with spaces where the replaced token was glued to a letter ("mp3" -> "mp three")."""
    if start > 0 and _LETTER_ANY.match(text[start - 1]):
        words = " " + words
    if end < len(text) and _LETTER_ANY.match(text[end]):
        words += " "
    return words


# ------------------------------------------------------------------------------------------
class _Rewriter:
    """Dispatches master-regex matches to handlers; records every rewrite."""

    def __init__(self, text: str, forced: str | None, changes: list[tuple[str, str]], foreign: bool) -> None:
        self.text = text
        self.foreign = (
            ForeignContext(text) if foreign else None
        )  # Spanish, French or German tokens stay as written
        self.ctx = _Context(text, forced)
        self.changes = changes
        self.tag_spans = [m.span() for m in TAG_RE.finditer(text)] if ("[" in text or "<" in text) else []
        self.handlers: dict[str, Callable[[re.Match[str], _Reader], str | None]] = {
            "iso": self._iso,
            "dmy": self._dmy,
            "mdy": self._mdy,
            "dmonth": self._dmonth,
            "time": self._time,
            "hour": self._hour,
            "money": self._money,
            "pct": self._pct,
            "unit": self._unit,
            "ord": self._ord,
            "decade": self._decade,
            "range": self._range,
            "hash": self._hash,
            "num": self._num,
            "abbrs": self._abbr,
            "no": self._no,
            "amp": self._amp,
        }

    def run(self) -> str:
        return _MASTER_RE.sub(self._replace, self.text)

    def _replace(self, m: re.Match[str]) -> str:
        original = m.group(0)
        start, end = m.span()
        for t_start, t_end in self.tag_spans:
            if t_start < end and start < t_end:
                return original
        if self.foreign is not None and self.foreign.lang_at(start, end) is not None:
            return original
        reader = _Reader(self.ctx.lang_at(start, end))
        kind = m.lastgroup
        assert kind is not None
        try:
            words = self.handlers[kind](m, reader)
        except (ValueError, KeyError, IndexError, OverflowError):  # malformed token: read its numbers only
            words = None
        if words is None:  # not what it looked like ("45/13/2024"): still say each number
            words = _DIGITS_RE.sub(lambda d: reader.number(d.group(0)), original)
        if words == original:
            return original
        words = _glue(self.text, start, end, words)
        self.changes.append((original, words.strip()))
        return words

    # --- dates -------------------------------------------------------------------------------
    def _date(self, reader: _Reader, day: int, month: int, year: int | None, day_first: bool) -> str | None:
        return date_words(reader.lang, day, month, year, day_first=day_first)

    def _iso(self, m: re.Match[str], r: _Reader) -> str | None:
        return self._date(r, int(m["iso_d"]), int(m["iso_m"]), int(m["iso_y"]), day_first=False)

    def _dmy(self, m: re.Match[str], r: _Reader) -> str | None:
        return self._date(r, int(m["dmy_d"]), int(m["dmy_m"]), int(m["dmy_y"]), day_first=False)

    def _mdy(self, m: re.Match[str], r: _Reader) -> str | None:
        month = MONTH_LOOKUP[m["mdy_m"].rstrip(".").lower()]
        year = int(m["mdy_y"]) if m["mdy_y"] else None
        return self._date(r, int(m["mdy_d"]), month, year, day_first=False)

    def _dmonth(self, m: re.Match[str], r: _Reader) -> str | None:
        name = m["dm_m"].rstrip(".")
        month = MONTH_LOOKUP.get(name.lower(), MONTH_LOOKUP.get(name))
        if month is None:
            return None
        year = int(m["dm_y"]) if m["dm_y"] else None
        words = self._date(r, int(m["dm_d"]), month, year, day_first=True)
        if words is not None and m["dm_of"] and r.lang == "en":
            words = words.replace(" ", " of ", 1)
        return words

    # --- times -------------------------------------------------------------------------------
    def _clock(self, r: _Reader, h: int, mi: int, s: int | None, ap: str | None, apdot: str | None,
               end: int, baje: bool = False) -> str | None:  # fmt: skip
        if ap is not None and not 1 <= h <= 12:
            return None
        if h > 24 or mi > 59 or (s is not None and s > 59):
            return None
        if r.lang == "hi":
            if baje and s is None and mi in _HI_QUARTERS:
                words = _HI_QUARTERS[mi](h) + " बजे"  # "10:30 बजे" is said "साढ़े दस बजे"
            else:
                words = hi.cardinal(h) + (" बजे" if mi == 0 and s is None else f" बजकर {hi.cardinal(mi)} मिनट")
            if s is not None:
                words += f" {hi.cardinal(s)} सेकंड"
            if ap is not None:
                h24 = (h % 12) + (12 if ap.lower() == "p" else 0)
                period = (
                    "सुबह"
                    if 4 <= h24 < 12
                    else "दोपहर"
                    if 12 <= h24 < 16
                    else "शाम"
                    if 16 <= h24 < 20
                    else "रात"
                )
                words = f"{period} {words}"
            return words
        if mi == 0 and s is None:
            words = en.cardinal(h) + ("" if ap is not None else " o'clock")
        else:
            words = en.cardinal(h) + " " + ("oh " + en.ONES[mi] if mi < 10 else en.cardinal(mi))
        if s is not None:
            words += f" and {en.cardinal(s)} second" + ("" if s == 1 else "s")
        if ap is not None:
            words += " A M" if ap.lower() == "a" else " P M"
            if apdot and _sentence_end_follows(self.text, end):
                words += "."
        return words

    def _time(self, m: re.Match[str], r: _Reader) -> str | None:
        s = int(m["t_s"]) if m["t_s"] else None
        words = self._clock(
            r, int(m["t_h"]), int(m["t_m"]), s, m["t_ap"], m["t_apdot"], m.end(), bool(m["t_baje"])
        )
        if words is not None and m["t_baje"] and r.lang != "hi":
            words += m["t_baje"]
        return words

    def _hour(self, m: re.Match[str], r: _Reader) -> str | None:
        return self._clock(r, int(m["h_h"]), 0, None, m["h_ap"], m["h_apdot"], m.end())

    # --- money, percent, units -----------------------------------------------------------------
    def _money(self, m: re.Match[str], r: _Reader) -> str | None:
        key = _CURRENCY_KEYS[m["cur"].lower()]
        names = _CURRENCIES[key]
        raw = m["m_num"]
        hi_lang = r.lang == "hi"
        if m["m_scale"]:
            scale = _AMOUNT_SCALES[m["m_scale"].lower()][1 if hi_lang else 0]
            return f"{r.number(raw)} {scale} {names[5] if hi_lang else names[1]}"
        whole, _, frac = raw.partition(".")
        major_sg, major_pl, minor_sg, minor_pl = names[4:8] if hi_lang else names[0:4]
        if frac and len(frac) > 2:
            return f"{r.number(raw)} {major_pl}"
        parts = []
        if whole.replace(",", "").strip("0") or not frac:
            parts.append(
                f"{r.integer(whole, spoken_digits_ok=False)} {major_sg if _is_one(whole) else major_pl}"
            )
        minor = int(frac.ljust(2, "0")) if frac else 0
        if minor:
            parts.append(f"{r.integer(str(minor))} {minor_sg if minor == 1 else minor_pl}")
        return (" " if hi_lang else " and ").join(parts)

    def _pct(self, m: re.Match[str], r: _Reader) -> str:
        words = r.number(m["p_num"]) + (" प्रतिशत" if r.lang == "hi" else " percent")
        return (r.minus() + " " + words) if m["p_neg"] else words

    def _unit(self, m: re.Match[str], r: _Reader) -> str | None:
        unit = m["u_unit"]
        names = _UNITS.get(unit.lower()) or _UNITS.get(unit)
        if names is None:
            return None
        raw = m["u_num"]
        name = names[2] if r.lang == "hi" else (names[0] if _is_one(raw) else names[1])
        words = f"{r.number(raw)} {name}"
        return (r.minus() + " " + words) if m["u_neg"] else words

    # --- ordinals, years, plain numbers --------------------------------------------------------
    def _ord(self, m: re.Match[str], r: _Reader) -> str:
        n = int(m["o_num"])
        if m["o_hi"]:
            return hi.ordinal(n, _HI_ORD_SUFFIX[m["o_hi"]])  # a Hindi suffix means a Hindi ordinal
        return r.ordinal(n)

    def _decade(self, m: re.Match[str], r: _Reader) -> str | None:
        if r.lang == "hi":
            return hi.year(int(m["dec_y"])) + " का दशक"
        return en.plural_year(int(m["dec_y"]))

    def _range(self, m: re.Match[str], r: _Reader) -> str:
        a, b = (m["r_a"], m["r_b"]) if m["r_a"] else (m["r_ha"], m["r_hb"])
        if r.lang == "hi":
            return f"{r.number(a)} से {r.number(b)}" + (" प्रतिशत" if m["r_pct"] else " तक")
        return f"{r.number(a)} to {r.number(b)}" + (" percent" if m["r_pct"] else "")

    def _hash(self, m: re.Match[str], r: _Reader) -> str:
        return "नंबर " if r.lang == "hi" else "number "

    def _num(self, m: re.Match[str], r: _Reader) -> str:
        raw = m["n_num"]
        sign = m["n_sign"]
        if sign is None and "," not in raw and "." not in raw and len(raw) == 4 and self._year_context(m, r):
            return r.year(int(raw))
        words = r.number(raw)
        if sign == "-":
            return r.minus() + " " + words
        if sign == "+":
            return ("प्लस " if r.lang == "hi" else "plus ") + words
        return words

    def _year_context(self, m: re.Match[str], r: _Reader) -> bool:
        if not 1000 <= int(m["n_num"]) <= 2099:
            return False
        before = self.text[max(0, m.start() - 16) : m.start()]
        cue = _YEAR_CUE_HI if r.lang == "hi" else _YEAR_CUE_EN
        return bool(cue.search(before) or _YEAR_AFTER.match(self.text, m.end()))

    # --- abbreviations and symbols ---------------------------------------------------------------
    def _abbr(self, m: re.Match[str], r: _Reader) -> str | None:
        if m["eg"]:
            return "for example" if m["eg"][0] in "eE" else "that is"
        if m["title"]:
            return _TITLES[m["title"]]
        if m["ntitle"]:
            return _NAME_TITLES[m["ntitle"]]
        if m["dr"]:
            follows_name = re.match(r"\s+[A-Z]", self.text[m.end() : m.end() + 2]) is not None
            before = self.text[max(0, m.start() - 20) : m.start()]
            after_name = re.search(r"[A-Z][a-z]+\s+$", before) is not None
            if m["dr"] == "Dr":
                word = "Drive" if after_name and not follows_name else "Doctor"
            else:
                word = "Street" if after_name else "Saint"
            keep_stop = word in ("Drive", "Street") and _sentence_end_follows(self.text, m.end())
            return word + ("." if keep_stop else "")
        if m["abbr"]:
            keep_stop = m["abbr"] != "vs" and _sentence_end_follows(self.text, m.end())
            return _ABBREVIATIONS[m["abbr"]] + ("." if keep_stop else "")
        if m["vs"]:
            return "versus"
        if m["unitword"]:
            return _UNITS[m["unitword"]][1]
        if m["hiabbr"]:
            return _HI_ABBREVIATIONS[m["hiabbr"]]
        return None

    def _no(self, m: re.Match[str], r: _Reader) -> str:
        return "number"

    def _amp(self, m: re.Match[str], r: _Reader) -> str:
        return "और" if r.lang == "hi" else "and"


# ------------------------------------------------------------------------------------------
def _clean_chars(text: str, changes: list[tuple[str, str]]) -> str:
    def sub_char(m: re.Match[str]) -> str:
        new = "".join(_CHAR_MAP[ch] for ch in m.group(0))
        changes.append((m.group(0), new))
        return new

    return _CONTROL_RE.sub(" ", _CHAR_RE.sub(sub_char, text))


def _tidy(text: str, changes: list[tuple[str, str]]) -> str:
    """One space between words, none before punctuation, no repeated punctuation."""
    text = _SPACE_BEFORE_PUNCT_RE.sub("", _WS_RE.sub(" ", text).strip())

    def sub_repeat(m: re.Match[str]) -> str:
        new = _repeat_punct(m)
        if new != m.group(0):
            changes.append((m.group(0), new))
        return new

    return _REPEAT_RE.sub(sub_repeat, text)


def normalize_text(text: str, language: str | None = None, *, markdown: bool = True) -> NormalizationResult:
    """Rewrite `text` into speakable words. `language`: None (detect), "en" or "hi" (force numbers).
    `markdown=False`: the caller has already read the Markdown (processing.markdown; before tags)."""
    if language in ("auto", "mixed"):
        language = None
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES} or None, not {language!r}")
    changes: list[tuple[str, str]] = []
    text = drop_emoji(text)  # before Markdown: "#😀 20" is a heading once the emoji has gone
    if markdown:
        text = read_markdown(text)
    out = _tidy(_clean_chars(text, changes), changes)
    out = normalize_chinese(out, changes)  # numbers in Chinese context first: they are read in Chinese
    foreign = language is None and has_foreign_words(out)
    if foreign:
        out = read_foreign_numbers(out, changes)  # numbers in Spanish, French or German text
    out = normalize_symbols(
        out, changes, foreign=foreign
    )  # phones, versions, fractions, URLs, symbols (en / hi)
    out = _tidy(_Rewriter(out, language, changes, foreign).run(), changes)
    detected = detect_language(out)
    return NormalizationResult(text=out, language=language or detected, changes=changes)
