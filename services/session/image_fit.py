"""An image made fit for a model (SPEC §8.2): at most `max_px` on its long side, at most 5 MiB.

Pillow is imported by `fitted` itself, the first time an image needs looking at: a session that
never sees an image does not pay for it in memory. `fitted` is CPU work; callers run it in a thread.
"""

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations only: Pillow stays unimported until an image comes
    from PIL.Image import Image as ImageType

MAX_IMAGE_BYTES = 5 * 1024 * 1024
JPEG_QUALITIES = (85, 70, 50)  # tried in turn until the JPEG fits MAX_IMAGE_BYTES
# Pillow's format names; a camera's JPEG with a preview inside opens as MPO, and is a JPEG.
MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


class UnreadableImageError(ValueError):
    """Pillow cannot decode the bytes (a broken or mislabelled file)."""


def fitted(data: bytes, media_type: str, max_px: int) -> tuple[str, bytes]:
    """The image's media type and bytes as the model gets them: unchanged when it already fits;
    else shrunk to `max_px` on the long side in its own format, and re-encoded as JPEG if that is
    still over MAX_IMAGE_BYTES."""
    from PIL import Image, UnidentifiedImageError  # lazy: see the module docstring

    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = "JPEG" if image.format == "MPO" else image.format or "PNG"
            actual = MEDIA_TYPES.get(image_format, media_type)  # what the bytes are, not the name
            if max(image.size) <= max_px and len(data) <= MAX_IMAGE_BYTES:
                return actual, data
            image.load()
            if max(image.size) > max_px:
                image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
            shrunk = _encoded(image, image_format)
            if len(shrunk) <= MAX_IMAGE_BYTES:
                return actual, shrunk
            return "image/jpeg", _as_jpeg(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"not a readable image ({type(exc).__name__})") from None


def _encoded(image: "ImageType", image_format: str, **options: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return out.getvalue()


def _as_jpeg(image: "ImageType") -> bytes:
    rgb = image.convert("RGB")  # JPEG has no alpha and no palette
    encoded = b""
    for quality in JPEG_QUALITIES:
        encoded = _encoded(rgb, "JPEG", quality=quality)
        if len(encoded) <= MAX_IMAGE_BYTES:
            break
    return encoded
