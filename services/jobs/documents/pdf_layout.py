"""A PDF page's text as lines and paragraphs, from where PDFium (pypdfium2) places each character.

PDFium orders a page's characters in reading order, breaks lines and adds most word spaces; what it leaves out
is put back from the characters' boxes: a gap of more than `WORD_GAP` of the line's height between two
characters is a space (PostScript-made PDFs, groff's and ghostscript's, place words apart with no space
character), while the small moves of kerning inside a word ("Departure", "The Ticket") are not. A line's size is
its first character's font size as drawn (the text matrix's scale included), its boldness the font's name or
ForceBold flag there.

Lines become paragraphs where the space between them grows past the page's usual line pitch, where the size
changes, after a short line that ends a sentence, and between a short line and one of another weight. `Paragraph.heading` marks a short paragraph set larger
than the body text, or bold where the body is not: such a paragraph is read as a sentence of its own. Every step
is linear in the page's characters (one PDFium call per character and a few per line).
"""

from __future__ import annotations

import ctypes
import math
import re
import statistics
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

WORD_GAP = 0.15  # of a line's character height: wider gaps are word spaces; kerning moves by less
_PARAGRAPH_PITCH = (
    1.25  # a line further below the one before than this times the usual pitch starts a paragraph
)
_SIZE_STEP = 0.12  # lines whose heights differ by more than this share are in different paragraphs
HEADING_SIZE = 1.08  # a paragraph this much larger than the body text is a heading
_MAX_HEADING_LINES = 3
_MAX_HEADING_CHARS = 200
_SENTENCE_END = tuple(".!?:\"'”’)")
_HYPHENS = ("-", "\xad", "\x02")  # PDFium reports a soft hyphen at a line's end as U+0002
_BOLD_NAME = re.compile(r"bold|black|heavy|semibold|demi", re.IGNORECASE)
_FOLIO = re.compile(r"\d{1,4}|[ivxlc]{1,8}|-\s*\d{1,4}\s*-|page \d{1,4}( of \d{1,4})?", re.IGNORECASE)


@dataclass
class Line:
    text: str
    size: float  # in points, as drawn
    bold: bool
    left: float
    right: float
    bottom: float


@dataclass
class Paragraph:
    text: str
    size: float
    bold: bool
    lines: int
    heading: bool = False


def page_lines(textpage: Any) -> list[Line]:
    """The page's lines, top to bottom, with their word spaces (see the module docstring)."""
    import pypdfium2.raw as pdfium

    handle = textpage.raw
    count = pdfium.FPDFText_CountChars(handle)
    if count <= 0:
        return []
    text = textpage.get_text_range()
    if len(text) != count:  # characters PDFium inserts or drops in its text: read them one by one
        text = "".join(chr(pdfium.FPDFText_GetUnicode(handle, k) or 0xFFFD) for k in range(count))
    rect = pdfium.FS_RECTF()
    box = ctypes.byref(rect)
    loose_box = pdfium.FPDFText_GetLooseCharBox
    lines: list[Line] = []
    start = 0
    while start < count:
        end = text.find("\n", start)
        end = count if end < 0 else end
        line = _line(text, start, end, handle, loose_box, rect, box)
        if line is not None:
            first = start + next(i for i, c in enumerate(text[start:end]) if not c.isspace())
            line.bold = _bold(pdfium, handle, first)
            line.size = _font_size(pdfium, handle, first) or line.size
            lines.append(line)
        start = end + 1
    return lines


def _line(text: str, start: int, end: int, handle: Any, loose_box: Any, rect: Any, box: Any) -> Line | None:
    """Characters `start` to `end` as a line: one PDFium call per character that is not a space (the loop is the
    reader's hot path: the word gap, bottom and left edge come from the first character, the right from the last)."""
    out: list[str] = []
    append = out.append
    right: float | None = None  # the last character's right edge, None after a space
    gap = height = left_edge = right_edge = bottom = 0.0
    first = True
    for k in range(start, end):
        char = text[k]
        if char.isspace():
            append(" ")
            right = None
            continue
        loose_box(handle, k, box)
        if first:
            first = False
            height = rect.top - rect.bottom
            gap, left_edge, bottom = WORD_GAP * height, rect.left, rect.bottom
        elif right is not None and rect.left - right > gap:
            append(" ")
        append(char)
        right = right_edge = rect.right
    line = " ".join(unicodedata.normalize("NFKC", "".join(out)).split())
    if not line:
        return None
    return Line(line, height, False, left_edge, right_edge, bottom)


def _bold(pdfium: Any, handle: Any, index: int) -> bool:
    """Whether the font is bold by its name or its ForceBold flag (the weight PDFium reports is guessed from the
    font's stems: 650 for an embedded Palatino-Roman, 455 for DejaVuSerif-Bold)."""
    flags = ctypes.c_int()
    buffer = ctypes.create_string_buffer(128)
    length = pdfium.FPDFText_GetFontInfo(handle, index, buffer, len(buffer), ctypes.byref(flags))
    name = buffer.value.decode("latin-1", "replace") if 0 < length <= len(buffer) else ""
    return bool(_BOLD_NAME.search(name)) or bool(flags.value & (1 << 18))  # ForceBold


def _font_size(pdfium: Any, handle: Any, index: int) -> float:
    """The character's size as drawn: the font size times the text matrix's vertical scale (PDFs that set a font
    at size 1 and scale it by the matrix are common)."""
    matrix = pdfium.FS_MATRIX()
    if not pdfium.FPDFText_GetMatrix(handle, index, ctypes.byref(matrix)):
        return 0.0
    return float(pdfium.FPDFText_GetFontSize(handle, index)) * math.hypot(matrix.c, matrix.d)


def without_folios(lines: list[Line]) -> list[Line]:
    """The page without a running page number as its first or last line."""
    lines = list(lines)
    while lines and _FOLIO.fullmatch(lines[-1].text):
        lines.pop()
    while lines and _FOLIO.fullmatch(lines[0].text):
        lines.pop(0)
    return lines


def body_style(pages: list[list[Line]]) -> tuple[float, bool]:
    """The body text's size and boldness: the ones most characters are set in."""
    sizes: Counter[float] = Counter()
    bold: Counter[bool] = Counter()
    for lines in pages:
        for line in lines:
            sizes[round(line.size, 1)] += len(line.text)
            bold[line.bold] += len(line.text)
    return (sizes.most_common(1)[0][0] if sizes else 0.0), (bold.most_common(1)[0][0] if bold else False)


def paragraphs(lines: list[Line], body: tuple[float, bool]) -> list[Paragraph]:
    """The page's lines joined into paragraphs (a word hyphenated at a line's end made whole), headings marked."""
    if not lines:
        return []
    pitches = [
        a.bottom - b.bottom
        for a, b in zip(lines, lines[1:], strict=False)
        if _same_size(a, b) and a.bottom > b.bottom
    ]
    pitch = statistics.median(pitches) if pitches else 1.2 * max(line.size for line in lines)
    right = max(line.right for line in lines)
    left = min(line.left for line in lines)
    out: list[Paragraph] = []
    group: list[Line] = [lines[0]]
    for before, line in zip(lines, lines[1:], strict=False):
        if _breaks(before, line, pitch, left, right):
            out.append(_paragraph(group, body))
            group = []
        group.append(line)
    out.append(_paragraph(group, body))
    return out


def _same_size(a: Line, b: Line) -> bool:
    return abs(a.size - b.size) <= _SIZE_STEP * max(a.size, b.size, 1e-6)


def _breaks(before: Line, line: Line, pitch: float, left: float, right: float) -> bool:
    """Whether `line` starts a new paragraph after `before`."""
    if not _same_size(before, line) or before.bottom - line.bottom > _PARAGRAPH_PITCH * pitch:
        return True
    if before.bottom < line.bottom:  # a line above the one before (a new column): a paragraph of its own
        return True
    em = max(line.size, 1.0)
    short = before.right < right - 2 * em
    if short and before.bold != line.bold:  # a bold line of its own (a heading set in the body's size)
        return True
    return before.text.endswith(_SENTENCE_END) and (short or line.left > left + 0.8 * em)


def _paragraph(lines: list[Line], body: tuple[float, bool]) -> Paragraph:
    parts: list[str] = []
    for line in lines:
        if parts and parts[-1].endswith(_HYPHENS) and line.text[:1].islower():
            parts[-1] = parts[-1][:-1] + line.text  # a word hyphenated across the line end, made whole
        else:
            parts.append(line.text)
    text = " ".join(p.rstrip("\xad\x02") for p in parts)
    size = max(line.size for line in lines)
    bold = all(line.bold for line in lines)
    body_size, body_bold = body
    heading = (
        len(lines) <= _MAX_HEADING_LINES
        and len(text) <= _MAX_HEADING_CHARS
        and (size > HEADING_SIZE * body_size or (bold and not body_bold))
    )
    return Paragraph(text, size, bold, len(lines), heading)
