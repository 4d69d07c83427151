"""Text as LLMs write it: Markdown and emoji turned into what a listener should hear.

`read_markdown(text)` runs before tags and number reading (processing/normalize.py, services/pipeline/text_plan.py):
- emphasis (`**bold**`, `__bold__`, `*italic*`, `_italic_`, `~~struck~~`): the markers go, the words stay;
  `2 * 3`, `snake_case` and a lone `*` are not emphasis and are left alone;
- links `[text](url)` and images `![alt](url)`: the text (or alt) is read, the URL is not; `[ref]: url`
  definition lines are dropped when `url` looks like a link (an address, a path, a file or domain name, an
  anchor), so `[excited]: what a day` is read; `[text][ref]`, `[text][]` and `[ref]` naming a dropped definition
  read `text`, any other `[a][b]` is left alone (`[excited][laughs]` is two tags);
  `<https://…>` reads the address;
- headings (`# Title`), bullets (`- `, `* `, `+ `), numbered items (`1. `, `1) `) and quotes (`> `): the markers
  go (never read as "number" or a symbol) and a line without closing punctuation gets a period, so the next
  line is a new sentence rather than a run-on;
- inline code `` `x` `` is read as its text; fence lines (```` ``` ````) are dropped, their content kept;
- horizontal rules and table separator rows are dropped; table cells are read separated by commas.

`drop_emoji(text)` removes emoji (pictographs, their skin-tone and variation selectors, joiners inside emoji
sequences, flags, keycap marks): the released model cannot say them and a name ("thumbs up sign") is rarely what
was meant. Joiners inside Indic words are kept.

Hand-written rather than a Markdown parser: a parser renders to HTML or a tree and would need a renderer back to
plain text; the handful of line and inline patterns LLMs use are a few regular expressions, and anything that is
not clearly Markdown passes through unchanged.

Linear in the text, whatever it holds: this runs on every request before anything is charged, so no pattern may
rescan the rest of a line from each opener (a line of 40,000 `![` cost n^2 steps in one `re.sub`, holding the
interpreter for a minute). Each pattern's scan stops at the next opener of its own kind (a link's text holds no
`[`, a strong span's no `**`), no two adjacent repeats can share the same characters, and code spans pair backtick
runs in one pass (`_code_spans`). bench/bench_text_linearity.py feeds every text step adversarial shapes and checks
that time grows linearly (docs/decisions/text-linearity.md).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]*(```|~~~).*$", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
# No two adjacent repeats take the same characters (`[ \t]*(?:\|[ \t]*)?`, not `[ \t]*\|?[ \t]*`): a line of spaces
# would otherwise be split between them every way there is.
_TABLE_SEPARATOR = re.compile(
    r"^[ \t]*(?:\|[ \t]*)?:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)+(?:\|[ \t]*)?$", re.MULTILINE
)
# `[label]: destination "optional title"`, dropped only when the destination looks like a link: LLM text such as
# "[excited]: what a day" or "[Note]:20,000 rows" is speech (CommonMark would even drop the second).
_LINK_DESTINATION = r"(?:<[^>\s]*[:/.][^>\s]*>|[a-zA-Z][\w+.-]*://\S+|(?:www\.|\.{0,2}/|#)[\w%~./?#&=+-]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}(?:[/?#]\S*)?)"
_REFERENCE_DEFINITION = re.compile(
    rf"^[ \t]*\[([^\]\n]+)\]:[ \t]*{_LINK_DESTINATION}(?:[ \t]+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\)))?[ \t]*$",
    re.MULTILINE,
)
# A link's text holds no `[`: its scan ends at the next opener, so each character is scanned from one opener only.
_REFERENCE_LINK = re.compile(r"!?\[([^\[\]\n]+)\](?:\[([^\[\]\n]*)\])?")
_LINE_MARKER = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d{1,3}[.)][ \t]+)+", re.MULTILINE)
_IMAGE_OR_LINK = re.compile(r"!?\[([^\[\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:[ \t]+\"[^\"\n]*\")?\)")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)>")
_BACKTICKS = re.compile(r"`+")
# A span's text holds no marker of its own kind, so its scan stops at the next one.
_STRONG = re.compile(r"(\*\*|__)(?=\S)((?:(?!\1).)+?)(?<=\S)\1")
_STRUCK = re.compile(r"~~(?=\S)((?:(?!~~).)+?)(?<=\S)~~")
_EM_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_EM_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])([^_\n]+?)(?<=[^\s_])_(?![\w_])")
_SENTENCE_CLOSE = tuple(".!?:;,।॥。！？；：…")

_EMOJI_CHAR = (
    "\U0001f000-\U0001faff"  # mahjong .. symbols and pictographs extended-A (flags, skin tones included)
    "\u2600-\u27bf"  # miscellaneous symbols, dingbats
    "\u231a\u231b\u23e9-\u23f3\u23f8-\u23fa\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55\u3030\u303d\u3297\u3299"
)
_EMOJI_RE = re.compile(
    f"[{_EMOJI_CHAR}](?:[\ufe0e\ufe0f\u20e3\U000e0020-\U000e007f]|\u200d(?=[{_EMOJI_CHAR}])|[{_EMOJI_CHAR}])*"
    "|[\ufe0f\u20e3]"  # a stray emoji presentation selector or keycap mark
)


def _code_spans(text: str) -> str:
    """Code spans read as their text: a run of backticks opens one that the next run of the same length closes
    (text between that neither starts nor ends with a space); runs are paired in one pass, never rescanned."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    if len(runs) < 2:
        return text
    following: list[int | None] = [None] * len(runs)  # the next run of the same length, by index
    last: dict[int, int] = {}
    for i in range(len(runs) - 1, -1, -1):
        length = runs[i][1] - runs[i][0]
        following[i] = last.get(length)
        last[length] = i
    out: list[str] = []
    position, i = 0, 0
    while i < len(runs):
        closer = following[i]
        if closer is not None:
            content = text[runs[i][1] : runs[closer][0]]
            if content and not content[0].isspace() and not content[-1].isspace():
                out += (text[position : runs[i][0]], content)
                position, i = runs[closer][1], closer + 1
                continue
        i += 1
    out.append(text[position:])
    return "".join(out)


def _closing_hashes(line: str) -> str:
    """A heading's closing `#`s (after a space) gone: `# Title ##` -> `# Title`."""
    kept = line.rstrip(" \t")
    bare = kept.rstrip("#")
    if bare == kept or not bare or bare[-1] not in " \t":
        return line
    return bare.rstrip(" \t")


def _inline(text: str) -> str:
    text = _IMAGE_OR_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _code_spans(text)
    for _ in range(2):  # nested emphasis (***both***, **a _b_ c**)
        text = _STRONG.sub(r"\2", text)
        text = _STRUCK.sub(r"\1", text)
        text = _EM_STAR.sub(r"\1", text)
        text = _EM_UNDERSCORE.sub(r"\1", text)
    return text


def _line(line: str) -> str:
    """One line, read: block markers gone, inline markup read, and a sentence end where a marker opened it."""
    table = line.count("|") >= 2 and line.strip().startswith("|")
    if table:
        line = ", ".join(cell.strip() for cell in line.strip().strip("|").split("|") if cell.strip())
    stripped = _LINE_MARKER.sub("", line)
    marked = table or stripped != line
    if marked:
        stripped = _closing_hashes(stripped)
    read = _inline(stripped).rstrip() if marked else _inline(stripped)
    if marked and read and not read.endswith(_SENTENCE_CLOSE):
        read += "."
    return read


def read_markdown(text: str) -> str:
    """`text` with Markdown markup replaced by what it means when read aloud (see the module docstring)."""
    if not any(mark in text for mark in "*_`#[]>|~-+") and not re.search(
        r"^[ \t]*\d{1,3}[.)]\s",
        text,
        re.MULTILINE,  # `[ \t]`, not `\s`: never across lines
    ):
        return text
    text = _FENCE.sub("", text)
    text = _RULE.sub("", text)
    text = _TABLE_SEPARATOR.sub("", text)
    labels: set[str] = set()  # of the definitions dropped, collected in the same pass

    def drop_definition(match: re.Match[str]) -> str:
        labels.add(match.group(1).strip().lower())
        return ""

    text = _REFERENCE_DEFINITION.sub(drop_definition, text)
    if labels:  # `[text][label]`, `[text][]` and `[label]` that name a dropped definition: the text is read
        text = _REFERENCE_LINK.sub(
            lambda m: m.group(1) if (m.group(2) or m.group(1)).strip().lower() in labels else m.group(0), text
        )
    return "\n".join(_line(line) for line in text.split("\n"))


def drop_emoji(text: str) -> str:
    return _EMOJI_RE.sub(" ", text) if _EMOJI_RE.search(text) else text
