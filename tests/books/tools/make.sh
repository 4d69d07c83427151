#!/usr/bin/env bash
# Remakes the books in this folder with the tools that write books (see README.md). Needs pandoc, groff and
# ghostscript, LibreOffice Writer, Chromium, and Python with ebooklib, python-docx and reportlab:
#   apt-get install pandoc groff ghostscript libreoffice-writer chromium
#   pip install ebooklib python-docx reportlab
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pandoc book.md -o pandoc-epub3.epub --toc
pandoc book.md -o pandoc-epub2.epub -t epub2 --toc
$PYTHON make_books.py  # PYTHON may hold a command and its arguments
groff -Tpdf -ms book.ms > groff.pdf

# LibreOffice: python-docx's document opened and saved again as EPUB, DOCX and PDF.
for format in epub docx pdf; do
    soffice --headless -env:UserInstallation=file://"$work"/profile --convert-to "$format" \
        --outdir "$work/$format" python-docx.docx > /dev/null
    cp "$work/$format/python-docx.$format" "libreoffice.$format"
done

# Chromium: pandoc's standalone HTML (its title block, then the chapters) printed to PDF.
pandoc book.md -s -o "$work/book.html"
chromium --headless --no-sandbox --disable-gpu --no-pdf-header-footer --generate-pdf-document-outline \
    --user-data-dir="$work/chromium" --print-to-pdf=chromium.pdf "file://$work/book.html" 2> /dev/null
