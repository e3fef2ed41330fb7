"""The bytes of attachments for model calls, from `sc_files` through a cache on disk (SPEC §8.2).

A file is fetched from the bus once and kept under `<workdir>/session/media/objects/`; a fitted
image beside it per `max_image_px`; the Files API ids of uploads under `file_ids/`, per API base
URL and content hash, so a restart does not upload a file again. Bytes are held in memory only
while the request that needs them is built and sent. A use refreshes a file's time; files unused
for `bus.files_ttl_days` (by then sc_files has dropped its copy too) are pruned every few hours.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path

import nats.errors
from nats.js.errors import NotFoundError

from services.session import image_fit
from services.session.media import MediaUnavailableError
from shared import subjects
from shared.bus import Connection
from shared.ids import new_id
from shared.messages.contract import Attachment

READ_TIMEOUT_S = 60.0  # a 20 MB file over a slow bus
PRUNE_EVERY_S = 6 * 3600.0
log = logging.getLogger(__name__)


class MediaStore:
    """Reads attachments (a `media.MediaReader`) and remembers Files API ids (a
    `file_uploads.FileIds`); one per session process, shared by its actors."""

    def __init__(self, conn: Connection, root: Path) -> None:
        self.conn = conn
        self.root = root

    async def original(self, attachment: Attachment) -> bytes:
        path = self._object_path(attachment)
        try:
            if not await asyncio.to_thread(path.exists):
                await self._fetch(attachment.object_name, path)
            return await asyncio.to_thread(used_bytes, path)
        except OSError as exc:  # a full or unwritable disk: this call goes without the file
            log.error("media cache %s: %r", self.root, exc)
            raise MediaUnavailableError(f"the session's file cache failed ({exc!r})") from None

    async def image(self, attachment: Attachment, max_px: int) -> tuple[str, bytes]:
        base = self._object_path(attachment)
        with contextlib.suppress(OSError):  # unreadable: fitted again below
            cached = await asyncio.to_thread(_fitted_copy, base, max_px)
            if cached is not None:
                return cached
        data = await self.original(attachment)
        try:
            fitted = await asyncio.to_thread(image_fit.fitted, data, attachment.media_type, max_px)
        except image_fit.UnreadableImageError as exc:
            raise MediaUnavailableError(str(exc)) from None
        try:
            await asyncio.to_thread(_keep_fitted, base, max_px, fitted, is_same=fitted[1] is data)
        except OSError as exc:  # not kept: fitted again next time
            log.warning("media cache %s: %r", self.root, exc)
        return fitted

    async def keep_pruned(self, max_age_s: float) -> None:
        """Prune now and every PRUNE_EVERY_S, until cancelled."""
        while True:
            removed = await asyncio.to_thread(prune, self.root, max_age_s)
            if removed:
                log.info(
                    "media cache: removed %d file(s) unused for %.0f days",
                    removed,
                    max_age_s / 86400,
                )
            await asyncio.sleep(PRUNE_EVERY_S)

    def file_id(self, base_url: str, sha256: str) -> str | None:
        try:
            return self._id_path(base_url, sha256).read_text(encoding="utf-8").strip() or None
        except OSError:  # none kept (or unreadable): uploaded again
            return None

    def remember(self, base_url: str, sha256: str, file_id: str) -> None:
        try:
            _write_atomically(self._id_path(base_url, sha256), file_id.encode())
        except OSError as exc:  # not kept: the file is uploaded again next time
            log.warning("media cache %s: %r", self.root, exc)

    def _object_path(self, attachment: Attachment) -> Path:
        # The size is part of the key: a name stored again with other bytes is another file.
        name = f"{attachment.object_name}\0{attachment.size}".encode()
        return self.root / "objects" / hashlib.sha256(name).hexdigest()

    def _id_path(self, base_url: str, sha256: str) -> Path:
        api = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
        return self.root / "file_ids" / api / sha256

    async def _fetch(self, name: str, path: Path) -> None:
        """Copy the object to `path`: whole, or not at all."""
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        partial = _partial(path)
        try:
            await self._download(name, partial)
            await asyncio.to_thread(partial.replace, path)
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)

    async def _download(self, name: str, partial: Path) -> None:
        out = await asyncio.to_thread(partial.open, "wb")
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                store = await self.conn.js.object_store(subjects.FILES_STORE)
                await store.get(name, writeinto=out)  # chunk by chunk, never whole in memory
        except NotFoundError:
            log.warning("%s holds no %s", subjects.FILES_STORE, name)
            raise MediaUnavailableError("the file is no longer stored") from None
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("cannot read %s: %r", name, exc)
            raise MediaUnavailableError(f"the file store did not answer ({exc!r})") from None
        finally:
            await asyncio.to_thread(out.close)


def _fitted_copy(base: Path, max_px: int) -> tuple[str, bytes] | None:
    """A fitted image kept earlier: `<object>.px<max_px>.<subtype>`."""
    for found in base.parent.glob(f"{base.name}.px{max_px}.*"):
        subtype = found.name.rsplit(".", 1)[1]
        return f"image/{subtype}", used_bytes(found)
    return None


def used_bytes(path: Path) -> bytes:
    """The file's bytes; its time says it was used now, so pruning keeps it."""
    data = path.read_bytes()
    with contextlib.suppress(OSError):
        os.utime(path)
    return data


def prune(root: Path, max_age_s: float) -> int:
    """Remove the cached files (originals, fitted images, leftovers of a crash) unused for
    `max_age_s`; the Files API ids stay (a few bytes each, and an upload costs more)."""
    cutoff = time.time() - max_age_s
    removed = 0
    for path in (root / "objects").glob("*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def _keep_fitted(base: Path, max_px: int, fitted: tuple[str, bytes], *, is_same: bool) -> None:
    media_type, data = fitted
    path = base.with_name(f"{base.name}.px{max_px}.{media_type.partition('/')[2]}")
    if is_same:  # the original fits as it is: a second name for it, not a copy
        with contextlib.suppress(FileExistsError):  # kept by a concurrent call already
            os.link(base, path)
        return
    _write_atomically(path, data)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(path)
    partial.write_bytes(data)
    partial.replace(path)


def _partial(path: Path) -> Path:
    """Where `path` is written before it is renamed into place; no lookup ever matches it."""
    return path.with_name(f".{new_id('part_')}.{path.name}")
