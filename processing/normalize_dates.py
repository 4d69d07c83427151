"""Dates in the normaliser: month names (English; Hindi with its spellings), the words of a date, and the reading of
a short numeric date without a year (`12/05`), which the fraction reading (normalize_symbols.py) hands over.

- `date_words("en", 15, 3, 2024, day_first=False)`: "March fifteenth, twenty twenty-four"; Hindi "पंद्रह मार्च दो हज़ार
  चौबीस"; `day_first` says the day before the month ("15th March"), as it was written.
- `short_date_words("12", "05", hindi)`: a zero-padded part marks a date, never a fraction (nobody writes "five
  twelfths" as 05/12): day/month as the numeric dates with a year are read (15/03/2024), or month/day when only that
  order is a date; "May twelfth". Without a zero-padded part (`3/4`, `12/5`) it stays a fraction.
"""

from __future__ import annotations

from processing import numbers_en as en
from processing import numbers_hi as hi

MONTHS_EN = "January February March April May June July August September October November December".split()
MONTHS_HI = "जनवरी फ़रवरी मार्च अप्रैल मई जून जुलाई अगस्त सितंबर अक्टूबर नवंबर दिसंबर".split()
MONTH_LOOKUP: dict[str, int] = {}
for _i, _m in enumerate(MONTHS_EN, 1):
    MONTH_LOOKUP[_m.lower()] = _i
    MONTH_LOOKUP[_m[:3].lower()] = _i
MONTH_LOOKUP["sept"] = 9
for _i, _variants in enumerate(
    (
        ("जनवरी",),
        ("फ़रवरी", "फरवरी"),
        ("मार्च",),
        ("अप्रैल", "अप्रेल"),
        ("मई",),
        ("जून",),
        ("जुलाई",),
        ("अगस्त",),
        ("सितंबर", "सितम्बर"),
        ("अक्टूबर", "अक्तूबर"),
        ("नवंबर", "नवम्बर"),
        ("दिसंबर", "दिसम्बर"),
    ),
    1,
):
    for _v in _variants:
        MONTH_LOOKUP[_v] = _i
MONTH_EN_RE = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?)"
)
MONTH_HI_RE = (
    "(?:" + "|".join(sorted((k for k in MONTH_LOOKUP if not k.isascii()), key=len, reverse=True)) + ")"
)


def date_words(lang: str, day: int, month: int, year: int | None, *, day_first: bool) -> str | None:
    """The words of a date in `lang` ("en" or "hi"); None when it is not one (month 1-12, day 1-31)."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    if lang == "hi":
        words = f"{hi.cardinal(day)} {MONTHS_HI[month - 1]}"
        return words + (f" {hi.year(year)}" if year is not None else "")
    month_name = MONTHS_EN[month - 1]
    if day_first:
        words = f"{en.ordinal(day)} {month_name}"
        return words + (f" {en.year(year)}" if year is not None else "")
    words = f"{month_name} {en.ordinal(day)}"
    return words + (f", {en.year(year)}" if year is not None else "")


def short_date_words(first: str, second: str, hindi: bool) -> str | None:
    """`first/second` without a year read as a date (module doc), or None: not zero-padded, or no date either way."""
    if not any(len(part) > 1 and part.startswith("0") for part in (first, second)):
        return None
    a, b = int(first), int(second)
    lang = "hi" if hindi else "en"
    if 1 <= a <= 31 and 1 <= b <= 12:
        return date_words(lang, a, b, None, day_first=False)
    if 1 <= a <= 12 and 1 <= b <= 31:
        return date_words(lang, b, a, None, day_first=False)
    return None
