"""Chinese readings of numbers and symbols in Chinese context: what the model should say in a Chinese sentence.

`normalize_chinese(text)` rewrites every number written next to Chinese text (or in a sentence that is mostly
Chinese) into Chinese words before the English/Hindi pass runs, so `我有3个苹果` says 两/三个 and never "three".

Readings:
- cardinals and decimals: 一百二十三, 一万零五, 三点一四; "2" before a measure word is 两 (两个, 两本);
- dates: 2024年3月5日 -> 二零二四年三月五日 (years digit by digit), 2024-03-05 -> the same, 3月5号 -> 三月五号;
- times: 8:30 -> 八点三十分, 9:00 -> 九点整;
- percentages: 50% -> 百分之五十; fractions: 1/2 -> 二分之一; ranges: 3-5个 -> 三到五个;
- money: ¥12.5 / 12.5元 -> 十二点五元, $5 -> 五美元, €, £, ₹ likewise;
- phone numbers, ids, numbers with a leading zero or more than 8 digits: digit by digit (13800138000 -> 一三八...);
- versions: 2.0.1 -> 二点零点一; units: 5kg -> 五千克, 10km -> 十公里, 25℃ -> 二十五摄氏度.

Number words come from `cn2an` (a maintained library, ~12 µs a number, exact on 万/亿 grouping and 零 rules,
which are easy to get subtly wrong); the context rules, categories and 两 are ours. One compiled alternation,
no nested quantifiers: linear in the text length.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import cn2an

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_RUN_RE = re.compile(f"[{_CJK}]+")
_LETTER_RE = re.compile(r"[^\W\d_]")
_NON_CJK_LETTER_RE = re.compile("[A-Za-z\u00c0-\u024f\u0900-\u097f]")

# Measure words after which 2 is read 两.
_LIANG_BEFORE = set(
    "个只本位条张件次天岁名台辆双对杯碗瓶块颗头匹所家间层份种点年周斤公米"
)  # not 月: 2月 is February
_CURRENCY_PREFIX = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑", "₹": "卢比"}
_UNITS = {
    "km": "公里",
    "kg": "千克",
    "cm": "厘米",
    "mm": "毫米",
    "ml": "毫升",
    "mg": "毫克",
    "kb": "千字节",
    "mb": "兆字节",
    "gb": "吉字节",
    "tb": "太字节",
    "g": "克",
    "m": "米",
    "l": "升",
    "℃": "摄氏度",
    "°c": "摄氏度",
    "°": "度",
    "h": "小时",
    "s": "秒",
    "min": "分钟",
}
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))

_INT = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
_NUM = rf"(?:{_INT})(?:\.[0-9]+)?"
_MASTER = re.compile(
    "|".join(
        (
            r"(?P<date>(?P<dy>[0-9]{4})年(?:(?P<dm>[0-9]{1,2})月(?:(?P<dd>[0-9]{1,2})(?P<dsuf>[日号]))?)?)",
            r"(?P<md>(?P<mm>[0-9]{1,2})月(?P<md_d>[0-9]{1,2})(?P<mdsuf>[日号]))",
            r"(?P<iso>(?<![0-9])(?P<iy>[0-9]{4})[-/.](?P<im>[0-9]{1,2})[-/.](?P<id>[0-9]{1,2})(?![0-9]))",
            r"(?P<time>(?<![0-9])(?P<th>[0-9]{1,2}):(?P<tm>[0-9]{2})(?::(?P<ts>[0-9]{2}))?(?![0-9]))",
            r"(?P<phone>(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9]{9}(?![0-9])|(?<![0-9])0[0-9]{2,3}-[0-9]{7,8}(?![0-9]))",
            rf"(?P<money>(?P<cur>[¥￥$€£₹])\s?(?P<amt>{_NUM}))",
            rf"(?P<pct>(?P<pv>{_NUM})\s?[%％])",
            r"(?P<ver>(?<![0-9.])[0-9]+(?:\.[0-9]+){2,5}(?![0-9.]))",
            r"(?P<frac>(?<![0-9/])(?P<fn>[0-9]{1,6})/(?P<fd>[0-9]{1,6})(?![0-9/]))",
            rf"(?P<range>(?P<ra>{_NUM})\s?[-~～–—]\s?(?P<rb>{_NUM})(?![0-9]))",
            rf"(?P<neg>(?<![0-9])[-−](?P<nv>{_NUM})(?P<nu>{_UNIT_ALT})?(?![A-Za-z0-9]))",
            rf"(?P<unit>(?P<uv>{_NUM})\s?(?P<u>{_UNIT_ALT})(?![A-Za-z]))",
            rf"(?P<num>{_NUM})",
        )
    ),
    re.IGNORECASE,
)


def _digits(raw: str) -> str:
    words: str = cn2an.an2cn(re.sub(r"[^0-9]", "", raw), "direct")
    return words


def _cardinal(raw: str) -> str:
    """一百二十三, 三点一四; ids and phone-like numbers (leading zero, more than 8 digits) digit by digit."""
    plain = raw.replace(",", "")
    whole = plain.split(".", 1)[0]
    if "," not in raw and (len(whole) > 8 or (len(whole) > 1 and whole.startswith("0"))):
        return _digits(plain) if "." not in plain else "点".join(_digits(p) for p in plain.split("."))
    words: str = cn2an.an2cn(plain, "low")
    return words


def _part(raw: str) -> str:
    """A date or time part: 03 -> 三."""
    words: str = cn2an.an2cn(str(int(raw)), "low")
    return words


def _count(raw: str, following: str) -> str:
    """A cardinal, with 两 for a lone 2 before a measure word."""
    if raw == "2" and following[:1] in _LIANG_BEFORE:
        return "两"
    return _cardinal(raw)


def mostly_chinese(text: str) -> bool:
    cjk = len(_CJK_RE.findall(text))
    return cjk > 0 and cjk >= len(_NON_CJK_LETTER_RE.findall(text))


def is_chinese_context(text: str, start: int, end: int, mostly: bool | None = None) -> bool:
    """The match holds a Chinese character (年, 月, ...), the nearest letter on either side (within 12 characters) is
    Chinese, or the text is mostly Chinese."""
    if _CJK_RE.search(text, start, end):
        return True
    for index in range(start - 1, max(-1, start - 13), -1):
        if _LETTER_RE.match(text[index]):
            if _CJK_RE.match(text[index]):
                return True
            break
    for index in range(end, min(len(text), end + 12)):
        if _LETTER_RE.match(text[index]):
            if _CJK_RE.match(text[index]):
                return True
            break
    return mostly_chinese(text) if mostly is None else mostly


def _read(match: re.Match[str], text: str) -> str:
    kind = match.lastgroup
    g = match.group
    following = text[match.end() : match.end() + 1]
    if g("date"):
        out = _digits(g("dy")) + "年"
        if g("dm"):
            out += _part(g("dm")) + "月"
            if g("dd"):
                out += _part(g("dd")) + g("dsuf")
        return out
    if g("md"):
        return f"{_part(g('mm'))}月{_part(g('md_d'))}{g('mdsuf')}"
    if g("iso"):
        return f"{_digits(g('iy'))}年{_part(g('im'))}月{_part(g('id'))}日"
    if g("time"):
        minutes = int(g("tm"))
        out = f"{_part(g('th'))}点" + (
            "整"
            if minutes == 0 and not g("ts")
            else ("零" if 0 < minutes < 10 else "") + f"{_part(g('tm'))}分"
        )
        if g("ts"):
            out += f"{_part(g('ts'))}秒"
        return out
    if g("phone"):
        return _digits(g("phone"))
    if g("money"):
        return _cardinal(g("amt")) + _CURRENCY_PREFIX[g("cur")]
    if g("pct"):
        return "百分之" + _cardinal(g("pv"))
    if g("ver"):
        return "点".join(_cardinal(part) for part in g("ver").split("."))
    if g("frac"):
        return f"{_cardinal(g('fd'))}分之{_cardinal(g('fn'))}"
    if g("range"):
        return f"{_cardinal(g('ra'))}到{_count(g('rb'), following)}"
    if g("neg"):
        return "负" + _cardinal(g("nv")) + (_UNITS[g("nu").lower()] if g("nu") else "")
    if g("unit"):
        return _cardinal(g("uv")) + _UNITS[g("u").lower()]
    assert kind == "num"
    return _count(g("num"), following)


_NEAR = 24  # characters around Chinese text in which a number can take its reading from it


def _matches(text: str, mostly: bool) -> Iterator[re.Match[str]]:
    """Candidate numbers: everywhere in mostly-Chinese text, else only near Chinese runs (the rest is skipped)."""
    if mostly:
        yield from _MASTER.finditer(text)
        return
    regions: list[list[int]] = []
    for run in _CJK_RUN_RE.finditer(text):
        start, end = max(0, run.start() - _NEAR), min(len(text), run.end() + _NEAR)
        if regions and start <= regions[-1][1]:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    for start, end in regions:
        yield from _MASTER.finditer(text, start, end)


def normalize_chinese(text: str, changes: list[tuple[str, str]] | None = None) -> str:
    """`text` with every number and symbol in Chinese context read in Chinese; other text untouched."""
    if not _CJK_RE.search(text):
        return text
    out: list[str] = []
    last = 0
    mostly = mostly_chinese(text)  # once: per match it would make the pass quadratic
    for match in _matches(text, mostly):
        if match.start() < last or not is_chinese_context(text, match.start(), match.end(), mostly):
            continue
        words = _read(match, text)
        out.append(text[last : match.start()])
        out.append(words)
        if changes is not None:
            changes.append((match.group(0), words))
        last = match.end()
    out.append(text[last:])
    return "".join(out)
