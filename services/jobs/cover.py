"""A book's cover checked as a picture before it is kept: whatever bytes a document labelled PNG or JPEG were
embedded as they came (a 20000x20000 PNG went to every player untouched). A cover is kept only when Pillow reads it
as a PNG or JPEG of at most `MAX_PIXELS` (its size comes from the header, so a huge one is refused before it is
decoded); one larger than `MAX_SIDE` on a side is scaled down. Anything else is dropped: the book is still made,
without a picture."""

from __future__ import annotations

import io
import logging
import warnings

from PIL import Image

MAX_PIXELS = (
    40_000_000  # about 6300x6300: decoded, at most ~160 MB for one cover (the reader's own bound is 4x that)
)
MAX_SIDE = 2000  # players show a few hundred pixels; 2000 keeps a print-quality thumbnail
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
logger = logging.getLogger("services.jobs")


def checked_cover(data: bytes) -> tuple[bytes, str] | None:
    """(picture, media type) to keep, or None when `data` is not a PNG or JPEG of bounded size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                media_type = _FORMATS.get(image.format or "")
                width, height = image.size
                if media_type is None or width * height > MAX_PIXELS or not width or not height:
                    logger.info(
                        "cover dropped", extra={"format": image.format, "width": width, "height": height}
                    )
                    return None
                image.load()  # decoded: a truncated or corrupt picture fails here
                if max(width, height) <= MAX_SIDE:
                    return data, media_type
                image.thumbnail((MAX_SIDE, MAX_SIDE))
                out = io.BytesIO()
                if media_type == "image/png":
                    image.save(out, "PNG", optimize=True)
                else:
                    image.convert("RGB").save(out, "JPEG", quality=90)
                return out.getvalue(), media_type
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        logger.info("cover dropped: not a readable picture")
        return None
