#!/usr/bin/env bash
# Remakes the books in this folder from license.md and cover.png (see README.md). Needs pandoc, groff, ffmpeg.
set -euo pipefail
cd "$(dirname "$0")"
meta=(-M "title=The Little Licence" -M "author=Ada Writer" -M lang=en)
pandoc license.md -o nested.epub --toc --toc-depth=2 "${meta[@]}" --epub-cover-image=cover.png
pandoc license.md -o nested-epub2.epub -t epub2 --toc --toc-depth=2 "${meta[@]}" --epub-cover-image=cover.png
pandoc license.md -o license.docx "${meta[@]}"
pandoc license.md -o license.pdf --pdf-engine=pdfroff "${meta[@]}"
