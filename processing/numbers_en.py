"""English number words: cardinals, ordinals, digit strings and years.

Scale choice: numbers are read with thousand / million / billion / trillion (no "and" after
"hundred"), unless the caller says the number was written with Indian grouping ("1,00,000"), in
which case thousand / lakh / crore are used ("one lakh", "twelve lakh thirty-four thousand").
Callers pass plain ints that fit in 15 digits; longer digit strings are read digit by digit.
"""

from __future__ import annotations

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

_WESTERN = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_INDIAN = ((10**7, "crore"), (10**5, "lakh"), (1000, "thousand"))

# Last-word rewrites for ordinals; everything else takes "th" ("twenty" -> "twentieth").
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _below_100(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, unit = divmod(n, 10)
    return TENS[tens] + ("-" + ONES[unit] if unit else "")


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _below_100(rest)
    words = ONES[hundreds] + " hundred"
    return words + (" " + _below_100(rest) if rest else "")


def _scaled(n: int, scales: tuple[tuple[int, str], ...]) -> str:
    for value, name in scales:
        if n >= value:
            quotient, rest = divmod(n, value)
            # The top scale's quotient may exceed its range ("one hundred crore"): recurse.
            words = _scaled(quotient, scales) + " " + name
            return words + (" " + _scaled(rest, scales) if rest else "")
    return _below_1000(n)


def cardinal(n: int, indian: bool = False) -> str:
    """Words for an integer: cardinal(20000) -> "twenty thousand"; negatives get "minus"."""
    if n < 0:
        return "minus " + cardinal(-n, indian)
    if n == 0:
        return "zero"
    return _scaled(n, _INDIAN if indian else _WESTERN)


def ordinal(n: int) -> str:
    """ordinal(22) -> "twenty-second"."""
    words = cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words.rsplit(" ", 1)[-1] else words.rpartition(" ")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def digits(s: str) -> str:
    """Digit-by-digit reading of an ASCII digit string: "0123" -> "zero one two three"."""
    return " ".join(ONES[int(ch)] for ch in s)


def year(y: int) -> str:
    """How years are spoken: 1999 -> "nineteen ninety-nine", 2005 -> "two thousand five",
    2024 -> "twenty twenty-four", 1900 -> "nineteen hundred", 1905 -> "nineteen oh five"."""
    if not 1000 <= y <= 9999 or 2000 <= y <= 2009 or y % 1000 == 0:
        return cardinal(y)
    high, low = divmod(y, 100)
    if low == 0:
        return _below_100(high) + " hundred"
    return _below_100(high) + " " + ("oh " + ONES[low] if low < 10 else _below_100(low))


def plural_year(y: int) -> str:
    """Decades: 1990 -> "nineteen nineties", 2000 -> "two thousands"."""
    words = year(y)
    return words[:-1] + "ies" if words.endswith("y") else words + "s"
