"""Writes the Python-made books of this folder (EbookLib EPUB 3, python-docx DOCX, reportlab PDF) from the text
in book.md, as each library's own documentation shows it used. Run by make.sh."""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TITLE, AUTHOR = "The Ticket Office", "Mira Okafor"
COPYRIGHT = [
    "Copyright © 2026 Mira Okafor. All rights reserved.",
    "First published in 2026 by Lantern Press. ISBN 978-0-00-000000-2.",
]
DEDICATION = "For Tove, who waited at every platform."


def chapters() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(chapter title, [(kind, text)])] from book.md's chapters (kind: "p" or "h2"), front matter left out."""
    body = (HERE / "book.md").read_text().split("\n---\n", 1)[1]
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for block in (b.strip() for b in body.split("\n\n") if b.strip()):
        if block.startswith("# ") and "{" not in block:
            out.append((block[2:], []))
        elif block.startswith("## ") and out:
            out[-1][1].append(("h2", block[3:]))
        elif out and not block.startswith("#"):
            out[-1][1].append(("p", block))
    return out


def ebooklib_epub(path: Path) -> None:
    """EPUB 3 as EbookLib's README makes one: the nav first in the spine, a copyright page the table of contents
    lists (epub:type="copyright-page"), then a dedication page that it does not."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("ticket-office-2026")
    book.set_title(TITLE)
    book.set_language("en")
    book.add_author(AUTHOR)
    copyright_page = epub.EpubHtml(title="Copyright", file_name="copyright.xhtml", lang="en")
    copyright_page.content = (
        '<section epub:type="copyright-page"><h1>Copyright</h1>'
        + "".join(f"<p>{line}</p>" for line in COPYRIGHT)
        + "</section>"
    )
    dedication = epub.EpubHtml(title="Dedication", file_name="dedication.xhtml", lang="en")
    dedication.content = f'<section epub:type="dedication"><p><em>{DEDICATION}</em></p></section>'
    pages = []
    for number, (title, blocks) in enumerate(chapters(), 1):
        page = epub.EpubHtml(title=title, file_name=f"chap_{number:02d}.xhtml", lang="en")
        page.content = f"<h1>{title}</h1>" + "".join(
            f"<h2>{text}</h2>" if kind == "h2" else f"<p>{text}</p>" for kind, text in blocks
        )
        pages.append(page)
    for item in (copyright_page, dedication, *pages):
        book.add_item(item)
    book.toc = [epub.Link("copyright.xhtml", "Copyright", "copyright"), *pages]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", copyright_page, dedication, *pages]
    epub.write_epub(str(path), book)


def python_docx(path: Path) -> None:
    """A DOCX as python-docx's quick start makes one: a Title paragraph, the author and copyright lines in
    ordinary paragraphs, a page break, the dedication, a page break, chapters in Heading 1, sections in Heading 2;
    the title and author in the core properties."""
    import docx
    from docx.enum.text import WD_BREAK

    document = docx.Document()
    document.core_properties.title = TITLE
    document.core_properties.author = AUTHOR
    document.add_paragraph(TITLE, style="Title")
    document.add_paragraph(AUTHOR, style="Subtitle")
    for line in COPYRIGHT:
        document.add_paragraph(line)
    document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    document.add_paragraph(DEDICATION).runs[0].italic = True
    document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    for title, blocks in chapters():
        document.add_heading(title, level=1)
        for kind, text in blocks:
            if kind == "h2":
                document.add_heading(text, level=2)
            else:
                document.add_paragraph(text)
    document.save(str(path))


def reportlab_pdf(path: Path) -> None:
    """A PDF as reportlab's platypus makes one: a title page (title, author, copyright lines), chapters in
    Heading1 each on a new page with an outline entry, sections in Heading2; the title and author in the
    information dictionary."""
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()

    class Book(SimpleDocTemplate):
        def afterFlowable(self, flowable: object) -> None:
            if isinstance(flowable, Paragraph) and flowable.style.name == "Heading1":
                key = re.sub(r"\W", "", flowable.getPlainText())
                self.canv.bookmarkPage(key)
                self.canv.addOutlineEntry(flowable.getPlainText(), key, level=0)

    story = [
        Paragraph(TITLE, styles["Title"]),
        Paragraph(AUTHOR, styles["Italic"]),
        Spacer(1, 48),
        *(Paragraph(line, styles["Normal"]) for line in COPYRIGHT),
        PageBreak(),
    ]
    for title, blocks in chapters():
        story.append(Paragraph(title, styles["Heading1"]))
        for kind, text in blocks:
            story.append(Paragraph(text, styles["Heading2" if kind == "h2" else "BodyText"]))
        story.append(PageBreak())
    Book(str(path), title=TITLE, author=AUTHOR).build(story)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    ebooklib_epub(out / "ebooklib.epub")
    python_docx(out / "python-docx.docx")
    reportlab_pdf(out / "reportlab.pdf")
