"""Readings the number pass would get wrong, in English or Hindi: phone numbers, versions, fractions, URLs,
e-mail addresses and stray symbols. Runs after the Chinese pass and before the main English/Hindi pass.

- phone numbers (`555-1234`, `+1 415 555 0100`, `(020) 7946 0958`, `98765 43210`): digit by digit, groups kept
  as pauses (commas), so they are never read as ranges or large numbers;
- versions and dotted ids (`2.0.1`, `v3.10`): "two point zero point one";
- fractions `1/2`, `3/4`: "one half", "three quarters", "five eighths"; Hindi आधा, पौना, तीन बटा चार; with a
  zero-padded part (`12/05`) a date instead ("May twelfth", normalize_dates.py);
- URLs and e-mail addresses: spoken as people read them ("example dot com slash docs", "anna at mail dot com"),
  query strings included (`?b=1` -> "b equals one"); the scheme (`https://`) is dropped;
- stray symbols between words: `&` and, `+` plus, `=` equals, `@` at, `#` number, `*` times (Hindi equivalents).

Own code: the readings are short tables and a handful of patterns; no library covers phone/URL speech in both
languages. Patterns have bounded repetition and no nested quantifiers (linear time).
"""

from __future__ import annotations

import re

from processing import numbers_en as en
from processing import numbers_hi as hi
from processing.normalize_dates import short_date_words
from processing.normalize_latin import ForeignContext

_DEV_RE = re.compile("[\u0900-\u097f]")
_LATIN_RE = re.compile("[A-Za-z]")

_FRACTIONS_EN = {
    (1, 2): "one half",
    (1, 3): "one third",
    (2, 3): "two thirds",
    (1, 4): "one quarter",
    (3, 4): "three quarters",
}
_FRACTIONS_HI = {(1, 2): "आधा", (1, 4): "एक चौथाई", (3, 4): "पौना", (1, 3): "एक तिहाई", (2, 3): "दो तिहाई"}
_SYMBOLS = {
    "&": ("and", "और"),
    "+": ("plus", "प्लस"),
    "=": ("equals", "बराबर"),
    "@": ("at", "एट"),
    "#": ("number", "नंबर"),
    "*": ("times", "गुणा"),
}
_URL_WORDS = {
    ".": ("dot", "डॉट"),
    "/": ("slash", "स्लैश"),
    "?": ("question mark", "प्रश्नचिह्न"),
    "=": ("equals", "बराबर"),
    "&": ("and", "और"),
    "-": ("dash", "डैश"),
    "_": ("underscore", "अंडरस्कोर"),
    ":": ("colon", "कोलन"),
    "@": ("at", "एट"),
    "#": ("hash", "हैश"),
    "%": ("percent", "प्रतिशत"),
    "+": ("plus", "प्लस"),
    "~": ("tilde", "टिल्डे"),
}

_PATTERN = re.compile(
    "|".join(
        (
            r"(?P<email>(?<![\w.])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}(?![\w@]))",
            r"(?P<url>(?<![\w@])(?:https?://|www\.)[^\s<>\"'\u0900-\u097f]{1,2000}?(?=[.,!?;:)\]]?(?:\s|$)))",
            r"(?P<phone>(?<![\w+])(?:\+[0-9]{1,3}[ -]?)?(?:\([0-9]{2,5}\)[ -]?)?[0-9]{2,5}(?:[ -][0-9]{2,5}){1,4}"
            r"(?![\w]))",
            r"(?P<ver>(?<![\w.])v?[0-9]{1,4}(?:\.[0-9]{1,4}){2,5}(?![\w.]|\.[0-9]))",
            r"(?P<frac>(?<![\w/.])(?P<fn>[0-9]{1,3})/(?P<fd>[0-9]{1,3})(?![\w/]))",
            r"(?P<sym>(?<=\s)[&+=@#*](?=\s))",
        )
    )
)
# A "phone" match must look like one: 7+ digits in all, and not a plain grouped number or a date/range.
_MIN_PHONE_DIGITS = 7


def _hindi_context(text: str, start: int, end: int) -> bool:
    window = text[max(0, start - 40) : start] + text[end : end + 40]  # around the match, not the match itself
    return len(_DEV_RE.findall(window)) > len(_LATIN_RE.findall(window))


def _digit_words(digits: str, hindi: bool) -> str:
    return hi.digits(digits) if hindi else en.digits(digits)


def _phone(raw: str, hindi: bool) -> str | None:
    digits = re.sub(r"[^0-9]", "", raw)
    if len(digits) < _MIN_PHONE_DIGITS:
        return None
    groups = [g for g in re.split(r"[^0-9+]+", raw) if g]
    if len(groups) == 2 and len(digits) < 10 and not (len(groups[0]) == 3 and len(groups[1]) == 4):
        return None  # "2020-2024", "10 20": a range or two numbers, not a phone number
    if len(groups) == 3 and len(groups[0]) == 4 and len(groups[1]) <= 2 and len(groups[2]) <= 2:
        return None  # 2024-03-15: a date
    words = []
    for group in groups:
        if group.startswith("+"):
            words.append(("प्लस " if hindi else "plus ") + _digit_words(group[1:], hindi))
        else:
            words.append(_digit_words(group, hindi))
    return ", ".join(words)


def _version(raw: str, hindi: bool) -> str:
    point = " पॉइंट " if hindi else " point "
    body = raw[1:] if raw[:1] in "vV" else raw
    parts = [
        (hi if hindi else en).cardinal(int(p))
        if not (len(p) > 1 and p.startswith("0"))
        else _digit_words(p, hindi)
        for p in body.split(".")
    ]
    return ("वर्ज़न " if hindi else "version ") * (raw[:1] in "vV") + point.join(parts)


def _fraction(numerator: int, denominator: int, hindi: bool) -> str | None:
    if denominator == 0:
        return None
    table = _FRACTIONS_HI if hindi else _FRACTIONS_EN
    if (numerator, denominator) in table:
        return table[(numerator, denominator)]
    if hindi:
        return f"{hi.cardinal(numerator)} बटा {hi.cardinal(denominator)}"
    top = en.cardinal(numerator)
    bottom = en.ordinal(denominator) + ("s" if numerator != 1 else "")
    return f"{top} {bottom}"


def _spell_address(raw: str, hindi: bool) -> str:
    """URL / e-mail: words as they are, digits one by one, separators named."""
    index = 1 if hindi else 0
    out: list[str] = []
    for piece in re.findall(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]", raw):
        if piece in _URL_WORDS:
            out.append(_URL_WORDS[piece][index])
        elif piece.isdigit():
            out.append(
                _digit_words(piece, hindi) if len(piece) > 2 else (hi if hindi else en).cardinal(int(piece))
            )
        else:
            out.append(piece)
    return " ".join(out)


def _url(raw: str, hindi: bool) -> str:
    body = re.sub(r"^https?://", "", raw)
    return _spell_address(body.rstrip("/"), hindi)


def normalize_symbols(
    text: str, changes: list[tuple[str, str]] | None = None, *, foreign: bool = False
) -> str:
    """The readings above; everything else is left for the main pass. `foreign`: the text has Spanish, French
    or German words (normalize_latin.py); matches among them are left as written."""
    out: list[str] = []
    last = 0
    context = ForeignContext(text) if foreign else None
    for match in _PATTERN.finditer(text):
        if context is not None and context.lang_at(match.start(), match.end()) is not None:
            continue
        hindi = _hindi_context(text, match.start(), match.end())
        kind, raw = match.lastgroup, match.group(0)
        words: str | None
        if kind == "email":
            words = _spell_address(raw, hindi)
        elif kind == "url":
            words = _url(raw, hindi)
        elif kind == "phone":
            words = _phone(raw, hindi)
        elif kind == "ver":
            words = _version(raw, hindi)
        elif kind == "frac":  # `12/05`: a zero-padded part makes it a date (normalize_dates.py)
            words = short_date_words(match.group("fn"), match.group("fd"), hindi) or _fraction(
                int(match.group("fn")), int(match.group("fd")), hindi
            )
        else:
            words = _SYMBOLS[raw][1 if hindi else 0]
        if words is None:
            continue
        out.append(text[last : match.start()])
        out.append(words)
        if changes is not None:
            changes.append((raw, words))
        last = match.end()
    out.append(text[last:])
    return "".join(out)
