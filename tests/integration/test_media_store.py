"""The session's attachment store on real NATS, logged in as the session: sc_files read once into
the disk cache, fitted images kept per size, Files API ids that outlive the process."""

from pathlib import Path

import pytest

from services.session.media import MediaUnavailableError
from services.session.media_store import MediaStore
from shared import bus, subjects
from tests.kit.attachments import png, size_of, stored

CONV = "cli_media"


@pytest.fixture
async def session_conn(nats_access):
    async with bus.connected(nats_access, "session") as conn:
        yield conn


def cached_objects(root: Path) -> list[Path]:
    return sorted((root / "objects").iterdir())


async def forget(test_bus, name: str) -> None:
    """Delete the object from sc_files, as its TTL would."""
    store = await test_bus.js.object_store(subjects.FILES_STORE)
    await store.delete(subjects.file_key(CONV, name))


async def test_a_file_is_fetched_from_sc_files_once(bus, session_conn, tmp_path):
    data = b"%PDF-1.4 " + bytes(range(256)) * 1000
    report = await stored(bus, CONV, "report.pdf", data, "application/pdf")
    store = MediaStore(session_conn, tmp_path / "media")

    assert await store.original(report) == data
    await forget(bus, "report.pdf")
    assert await store.original(report) == data  # from the cache: sc_files has it no longer
    assert len(cached_objects(tmp_path / "media")) == 1


async def test_a_file_sc_files_no_longer_has_cannot_be_read(bus, session_conn, tmp_path):
    gone = await stored(bus, CONV, "gone.txt", b"soon gone", "text/plain")
    await forget(bus, "gone.txt")
    store = MediaStore(session_conn, tmp_path / "media")

    with pytest.raises(MediaUnavailableError, match="the file is no longer stored"):
        await store.original(gone)
    assert cached_objects(tmp_path / "media") == []  # nothing half-written is left


async def test_fitted_images_are_kept_per_max_image_px(bus, session_conn, tmp_path):
    wide = await stored(bus, CONV, "wide.png", png(3000, 1000), "image/png")
    store = MediaStore(session_conn, tmp_path / "media")

    big = await store.image(wide, 1000)
    small = await store.image(wide, 500)
    await forget(bus, "wide.png")
    again = await store.image(wide, 1000)

    assert (big[0], size_of(big[1])) == ("image/png", (1000, 333))
    assert (small[0], size_of(small[1])) == ("image/png", (500, 167))
    assert again == big
    original, *fitted = cached_objects(tmp_path / "media")  # sorted: the original first
    assert [path.name.removeprefix(original.name) for path in fitted] == [
        ".px1000.png",
        ".px500.png",
    ]


async def test_an_image_that_fits_is_kept_as_it_came(bus, session_conn, tmp_path):
    data = png(64, 48)
    icon = await stored(bus, CONV, "icon.png", data, "image/png")
    store = MediaStore(session_conn, tmp_path / "media")

    assert await store.image(icon, 2048) == ("image/png", data)
    await forget(bus, "icon.png")
    assert await store.image(icon, 2048) == ("image/png", data)


async def test_file_ids_outlive_the_store_that_learnt_them(session_conn, tmp_path):
    first = MediaStore(session_conn, tmp_path / "media")
    first.remember("https://api.example/v1/", "ab12", "file_1")

    later = MediaStore(session_conn, tmp_path / "media")  # a restarted process
    assert later.file_id("https://api.example/v1", "ab12") == "file_1"
    assert later.file_id("https://other.example/v1", "ab12") is None
    assert later.file_id("https://api.example/v1", "cd34") is None
