"""`image_load` (SPEC §5.5): show a workspace image to the model (SPEC §8.3).

PNG, JPEG, WebP and GIF go as they are when they fit. A bigger one is shrunk to 2,048 px on its
long side in its own format, an animated one becomes its first frame, and any other format Pillow
reads becomes a PNG. Pillow is imported by `fit` itself, the first time an image is loaded, so a
tools service that never loads one does not hold it in memory; `fit` is CPU work, run in a thread.
"""

import asyncio
import io
from typing import TYPE_CHECKING, Annotated

import msgspec
from msgspec import Meta

from services.tools.builtin.media_load import MIB, attach, check_position, file_name, read
from services.tools.results import Attached, Result, ToolError
from services.tools.workspace import ToolCall

if TYPE_CHECKING:  # for the annotations only: Pillow stays unimported until an image comes
    from PIL.Image import Image as ImageType

MAX_BYTES = 20 * MIB
MAX_PX = 2048  # on the long side
MAX_PER_BATCH = 3
QUALITY = 90  # JPEG and WebP re-encoding
# Pillow's format names of the types that go as they are; a camera's JPEG with a preview inside
# opens as MPO, and is a JPEG.
KEPT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}  # what Pillow writes as PNG


class ImageLoadArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Look at an image from the workspace: it is shown to you with the result. PNG, JPEG, WebP
    and GIF (first frame); other formats are converted to PNG; shrunk to 2,048 px on the long
    side; up to 20 MiB; at most 3 per batch."""

    file_path: Annotated[
        str, Meta(min_length=1, description="the image file, relative to the workspace")
    ]


class ImageLoadResult(Result, frozen=True, kw_only=True):
    file_path: str
    media_type: str  # of the image as shown, after any conversion
    width: int  # px, as shown
    height: int
    loaded: bool


class Fitted(msgspec.Struct, frozen=True, kw_only=True):
    """The image as the model gets it."""

    media_type: str
    data: bytes
    width: int
    height: int
    is_original: bool  # the file's own bytes, not re-encoded


async def image_load(args: ImageLoadArgs, call: ToolCall) -> Attached:
    check_position(call, "image_load", MAX_PER_BATCH)
    data = await read(call, args.file_path, MAX_BYTES, "image_load")
    image = await asyncio.to_thread(fit, data, args.file_path)
    suffix = None if image.is_original else SUFFIXES[image.media_type]
    name = file_name(args.file_path, suffix)
    attachment = await attach(call, args.file_path, name, image.media_type, image.data)
    result = ImageLoadResult(
        file_path=args.file_path,
        media_type=image.media_type,
        width=image.width,
        height=image.height,
        loaded=True,
    )
    return Attached(result=result, attachments=[attachment])


def fit(data: bytes, path: str) -> Fitted:
    """The image in `data` made fit for the model; `path` names it in errors."""
    from PIL import Image, UnidentifiedImageError  # lazy: see the module docstring

    try:
        with Image.open(io.BytesIO(data)) as image:
            return _fitted(image, data)
    except Image.DecompressionBombError as exc:
        raise ToolError("too_large", f"{path} has too many pixels to load ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as exc:
        why = "unknown format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        message = f"{path} is not an image Pillow can read ({why or type(exc).__name__})"
        raise ToolError("invalid_arguments", message) from None


def _fitted(image: "ImageType", data: bytes) -> Fitted:
    image_format = "JPEG" if image.format == "MPO" else image.format or ""
    kept = KEPT.get(image_format)
    # Only multi-frame formats have `n_frames`; an MPO's second frame is its preview, not motion.
    is_animated = image_format != "JPEG" and getattr(image, "n_frames", 1) > 1
    if kept is not None and not is_animated and max(image.size) <= MAX_PX:
        width, height = image.size
        return Fitted(media_type=kept, data=data, width=width, height=height, is_original=True)
    image.load()  # the first frame
    shown = _shrunk(image) if max(image.size) > MAX_PX else image
    if kept is None:
        encoded, media_type = _encoded(_png_ready(shown), "PNG"), "image/png"
    else:
        encoded, media_type = _encoded(shown, image_format), kept
    width, height = shown.size
    return Fitted(
        media_type=media_type, data=encoded, width=width, height=height, is_original=False
    )


def _shrunk(image: "ImageType") -> "ImageType":
    """At most MAX_PX on the long side, upright, resampled smoothly (not from a palette)."""
    from PIL import Image, ImageOps

    upright = ImageOps.exif_transpose(image)  # re-encoding drops EXIF, so its rotation is applied
    if upright.mode in ("1", "P", "PA"):
        has_alpha = upright.mode == "PA" or "transparency" in upright.info
        upright = upright.convert("RGBA" if has_alpha else "RGB")
    upright.thumbnail((MAX_PX, MAX_PX), Image.Resampling.LANCZOS)
    return upright


def _png_ready(image: "ImageType") -> "ImageType":
    """The image in a mode PNG stores (CMYK, YCbCr, float and the like become RGB or RGBA)."""
    if image.mode in PNG_MODES:
        return image
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def _encoded(image: "ImageType", image_format: str) -> bytes:
    out = io.BytesIO()
    if image_format in ("JPEG", "WEBP"):
        image.save(out, format=image_format, quality=QUALITY)
    else:
        image.save(out, format=image_format)  # GIF and PNG: only the current (first) frame
    return out.getvalue()
