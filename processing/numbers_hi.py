"""Hindi number words: cardinals (Indian scale), ordinals, digit strings and years.

Hindi 0..99 is irregular, so it is a table. Above that: सौ (100), हज़ार (10^3), लाख (10^5) and
करोड़ (10^7); the करोड़ multiplier recurses, so 10^9 is "एक सौ करोड़" and 10^12 "एक लाख करोड़", as
news Hindi says it (अरब / खरब are avoided: listeners know them less well).
"""

from __future__ import annotations

UNITS_0_99 = (
    "शून्य एक दो तीन चार पाँच छह सात आठ नौ "
    "दस ग्यारह बारह तेरह चौदह पंद्रह सोलह सत्रह अठारह उन्नीस "
    "बीस इक्कीस बाईस तेईस चौबीस पच्चीस छब्बीस सत्ताईस अट्ठाईस उनतीस "
    "तीस इकतीस बत्तीस तैंतीस चौंतीस पैंतीस छत्तीस सैंतीस अड़तीस उनतालीस "
    "चालीस इकतालीस बयालीस तैंतालीस चवालीस पैंतालीस छियालीस सैंतालीस अड़तालीस उनचास "
    "पचास इक्यावन बावन तिरेपन चौवन पचपन छप्पन सत्तावन अट्ठावन उनसठ "
    "साठ इकसठ बासठ तिरेसठ चौंसठ पैंसठ छियासठ सड़सठ अड़सठ उनहत्तर "
    "सत्तर इकहत्तर बहत्तर तिहत्तर चौहत्तर पचहत्तर छिहत्तर सतहत्तर अठहत्तर उन्यासी "
    "अस्सी इक्यासी बयासी तिरासी चौरासी पचासी छियासी सत्तासी अट्ठासी नवासी "
    "नब्बे इक्यानबे बानबे तिरानबे चौरानबे पंचानबे छियानबे सत्तानबे अट्ठानबे निन्यानबे"
).split()
assert len(UNITS_0_99) == 100

_SCALES = ((10**7, "करोड़"), (10**5, "लाख"), (1000, "हज़ार"), (100, "सौ"))

# Irregular ordinals, by grammatical form: masculine (-ा), feminine (-ी), oblique/plural (-े).
_ORDINAL_IRREGULAR = {
    1: ("पहला", "पहली", "पहले"),
    2: ("दूसरा", "दूसरी", "दूसरे"),
    3: ("तीसरा", "तीसरी", "तीसरे"),
    4: ("चौथा", "चौथी", "चौथे"),
    6: ("छठा", "छठी", "छठे"),
}
_ORDINAL_SUFFIX = {"m": "वाँ", "f": "वीं", "o": "वें"}
_FORM_INDEX = {"m": 0, "f": 1, "o": 2}

MINUS = "माइनस"
POINT = "दशमलव"


def _scaled(n: int) -> str:
    if n < 100:
        return UNITS_0_99[n]
    for value, name in _SCALES:
        if n >= value:
            quotient, rest = divmod(n, value)
            words = _scaled(quotient) + " " + name
            return words + (" " + _scaled(rest) if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover


def cardinal(n: int) -> str:
    """cardinal(20000) -> "बीस हज़ार"; cardinal(100000) -> "एक लाख"."""
    if n < 0:
        return MINUS + " " + cardinal(-n)
    return _scaled(n)


def ordinal(n: int, form: str = "m") -> str:
    """ordinal(1) -> "पहला", ordinal(1, "f") -> "पहली", ordinal(5) -> "पाँचवाँ", ordinal(11, "o") -> "ग्यारहवें".

    form: "m" masculine, "f" feminine, "o" oblique / plural.
    """
    form = form if form in _FORM_INDEX else "m"
    if n in _ORDINAL_IRREGULAR:
        return _ORDINAL_IRREGULAR[n][_FORM_INDEX[form]]
    # नौ + वाँ is written नौवाँ; every other cardinal simply takes the suffix.
    return cardinal(n) + _ORDINAL_SUFFIX[form]


def digits(s: str) -> str:
    """Digit-by-digit reading of an ASCII digit string."""
    return " ".join(UNITS_0_99[int(ch)] for ch in s)


def year(y: int) -> str:
    """Years 1100..1999 are spoken in hundreds (1947 -> "उन्नीस सौ सैंतालीस"); others as cardinals
    (2024 -> "दो हज़ार चौबीस")."""
    if 1100 <= y <= 1999:
        high, low = divmod(y, 100)
        return UNITS_0_99[high] + " सौ" + (" " + UNITS_0_99[low] if low else "")
    return cardinal(y)
