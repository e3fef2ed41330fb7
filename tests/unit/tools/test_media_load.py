"""image_load, pdf_load and audio_load per SPEC §5.5: what reaches sc_files, in what form, and the
errors the model can act on."""

import io
import math
import struct
import wave

import msgspec
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from services.tools.builtin import audio_load, image_load, media_load, pdf_load
from services.tools.builtin.audio_load import AudioLoadArgs
from services.tools.builtin.image_load import ImageLoadArgs
from services.tools.builtin.pdf_load import PdfLoadArgs
from services.tools.context import RunnerContext
from services.tools.results import Attached, ToolError, encode
from tests.unit.tools.samples import tool_call

MP3_HEADER = b"\xff\xfb\x90\x00"  # MPEG-1 Layer III, 128 kbit/s, 44,100 Hz, no padding
MP3_FRAME_BYTES = 144 * 128_000 // 44_100  # 417


@pytest.fixture
def stored() -> dict[str, bytes]:
    return {}


@pytest.fixture
def call(workdir, stored):
    async def store_file(name: str, data: bytes) -> None:
        stored[name] = data

    return msgspec.structs.replace(tool_call(workdir), runner=RunnerContext(store_file=store_file))


def the_file(outcome: Attached, stored: dict[str, bytes]) -> bytes:
    """The one attached file's bytes, checked against what its Attachment says."""
    [attachment] = outcome.attachments
    assert list(stored) == [attachment.object_name]
    assert attachment.object_name.startswith("tg_1/tool_c1_")
    data = stored[attachment.object_name]
    assert attachment.size == len(data)
    return data


def picture(image_format: str, size: tuple[int, int], mode: str = "RGB", **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red" if mode in ("RGB", "RGBA") else 0).save(
        out, format=image_format, **options
    )
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def result_of(outcome: Attached) -> dict[str, object]:
    """The result as the model reads it."""
    decoded = msgspec.json.decode(encode(outcome.result))
    assert isinstance(decoded, dict)
    return decoded


async def failure(tool, args, call) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await tool(args, call)
    return caught.value


# image_load


async def test_a_png_that_fits_goes_as_it_is(call, stored):
    data = picture("PNG", (300, 200))
    (call.root / "pics").mkdir()
    (call.root / "pics" / "chart.png").write_bytes(data)
    outcome = await image_load.image_load(ImageLoadArgs(file_path="pics/chart.png"), call)
    assert the_file(outcome, stored) == data
    [attachment] = outcome.attachments
    assert (attachment.path, attachment.file_name, attachment.media_type) == (
        "pics/chart.png",
        "chart.png",
        "image/png",
    )
    assert result_of(outcome) == {
        "file_path": "pics/chart.png",
        "media_type": "image/png",
        "width": 300,
        "height": 200,
        "loaded": True,
    }


async def test_a_large_jpeg_is_shrunk_to_2048_px_and_stays_a_jpeg(call, stored):
    (call.root / "photo.jpg").write_bytes(picture("JPEG", (4096, 1024)))
    outcome = await image_load.image_load(ImageLoadArgs(file_path="photo.jpg"), call)
    shown = opened(the_file(outcome, stored))
    assert (shown.format, shown.size) == ("JPEG", (2048, 512))
    result = result_of(outcome)
    assert (result["width"], result["height"]) == (2048, 512)
    assert outcome.attachments[0].media_type == "image/jpeg"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("scan.bmp", picture("BMP", (40, 30))),
        ("scan.tif", picture("TIFF", (40, 30), mode="CMYK")),
    ],
)
async def test_other_formats_become_png(call, stored, name, data):
    (call.root / name).write_bytes(data)
    outcome = await image_load.image_load(ImageLoadArgs(file_path=name), call)
    shown = opened(the_file(outcome, stored))
    assert (shown.format, shown.mode, shown.size) == ("PNG", "RGB", (40, 30))
    [attachment] = outcome.attachments
    assert (attachment.file_name, attachment.media_type, attachment.path) == (
        "scan.png",
        "image/png",
        name,
    )


async def test_an_animated_gif_becomes_its_first_frame(call, stored):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue", "green")]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    (call.root / "anim.gif").write_bytes(out.getvalue())
    outcome = await image_load.image_load(ImageLoadArgs(file_path="anim.gif"), call)
    shown = opened(the_file(outcome, stored))
    assert (shown.format, getattr(shown, "n_frames", 1)) == ("GIF", 1)
    assert shown.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert result_of(outcome)["media_type"] == "image/gif"


async def test_a_file_pillow_cannot_read_is_a_bad_argument(call, stored):
    (call.root / "notes.png").write_text("not an image at all", encoding="utf-8")
    error = await failure(image_load.image_load, ImageLoadArgs(file_path="notes.png"), call)
    assert error.kind == "invalid_arguments"
    assert str(error) == "notes.png is not an image Pillow can read (unknown format)"
    assert stored == {}


async def test_a_missing_image_is_not_found(call):
    error = await failure(image_load.image_load, ImageLoadArgs(file_path="gone.png"), call)
    assert (error.kind, str(error)) == ("not_found", "gone.png does not exist")


async def test_an_image_over_the_limit_is_too_large(call, monkeypatch):
    monkeypatch.setattr(image_load, "MAX_BYTES", media_load.MIB)
    (call.root / "big.png").write_bytes(picture("PNG", (10, 10)) + b"\0" * media_load.MIB)
    error = await failure(image_load.image_load, ImageLoadArgs(file_path="big.png"), call)
    assert (error.kind, str(error)) == ("too_large", "big.png is over 1 MiB, the image_load limit")


@pytest.mark.parametrize(
    ("tool", "args", "max_per_batch"),
    [
        (image_load.image_load, ImageLoadArgs(file_path="x.png"), 3),
        (pdf_load.pdf_load, PdfLoadArgs(file_path="x.pdf"), 2),
        (audio_load.audio_load, AudioLoadArgs(file_path="x.wav"), 2),
    ],
)
async def test_calls_beyond_the_batch_limit_fail_before_reading(call, tool, args, max_per_batch):
    past = msgspec.structs.replace(call, position_in_batch=max_per_batch + 1)
    error = await failure(tool, args, past)
    assert error.kind == "limit_reached"
    assert f"(max_per_batch: {max_per_batch}, position_in_batch: {max_per_batch + 1})" in str(error)
    last = msgspec.structs.replace(call, position_in_batch=max_per_batch)
    assert (await failure(tool, args, last)).kind == "not_found"  # allowed: it went on to read


# pdf_load


def pdf_of(page_count: int) -> bytes:
    """A PDF whose page n is 100 + n points wide, so a page is known by its width."""
    writer = PdfWriter()
    for number in range(1, page_count + 1):
        writer.add_blank_page(width=100 + number, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def page_widths(data: bytes) -> list[int]:
    return [round(page.mediabox.width) for page in PdfReader(io.BytesIO(data)).pages]


async def test_a_whole_pdf_goes_as_it_is(call, stored):
    data = pdf_of(4)
    (call.root / "report.pdf").write_bytes(data)
    outcome = await pdf_load.pdf_load(PdfLoadArgs(file_path="report.pdf"), call)
    assert the_file(outcome, stored) == data
    assert result_of(outcome) == {
        "file_path": "report.pdf",
        "pages": "1-4",
        "page_count": 4,
        "loaded": True,
    }
    assert outcome.attachments[0].media_type == "application/pdf"


async def test_chosen_pages_make_a_new_pdf_of_just_those(call, stored):
    (call.root / "report.pdf").write_bytes(pdf_of(9))
    args = PdfLoadArgs(file_path="report.pdf", pages="2-4, 9,3")
    outcome = await pdf_load.pdf_load(args, call)
    assert page_widths(the_file(outcome, stored)) == [102, 103, 104, 109]
    result = result_of(outcome)
    assert (result["pages"], result["page_count"]) == ("2-4,9", 9)
    assert outcome.attachments[0].file_name == "report (pages 2-4,9).pdf"


@pytest.mark.parametrize("pages", ["1-x", "0", "5-2", "1,,2", "three"])
async def test_a_bad_page_list_is_named(call, pages):
    error = await failure(pdf_load.pdf_load, PdfLoadArgs(file_path="a.pdf", pages=pages), call)
    assert error.kind == "invalid_arguments"
    assert str(error).startswith(f'pages {pages!r} is not a page list like "1-5,9": ')


async def test_a_page_past_the_end_is_a_bad_argument(call, stored):
    (call.root / "short.pdf").write_bytes(pdf_of(3))
    args = PdfLoadArgs(file_path="short.pdf", pages="2-5")
    error = await failure(pdf_load.pdf_load, args, call)
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "page 4 is past the end of short.pdf (3 pages)",
    )
    assert stored == {}


async def test_more_than_100_pages_are_too_many(call):
    (call.root / "long.pdf").write_bytes(pdf_of(101))
    whole = await failure(pdf_load.pdf_load, PdfLoadArgs(file_path="long.pdf"), call)
    assert whole.kind == "too_large"
    assert str(whole).startswith("long.pdf has 101 pages; load at most 100 at a time")
    chosen = PdfLoadArgs(file_path="long.pdf", pages="1-60,70-110")
    error = await failure(pdf_load.pdf_load, chosen, call)
    assert (error.kind, str(error)) == (
        "too_large",
        "pages '1-60,70-110' selects 101 pages; choose at most 100 at a time",
    )
    fine = await pdf_load.pdf_load(PdfLoadArgs(file_path="long.pdf", pages="2-101"), call)
    result = result_of(fine)
    assert (result["pages"], result["page_count"]) == ("2-101", 101)


async def test_a_file_that_is_no_pdf_is_a_bad_argument(call):
    (call.root / "fake.pdf").write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    error = await failure(pdf_load.pdf_load, PdfLoadArgs(file_path="fake.pdf"), call)
    assert error.kind == "invalid_arguments"
    assert str(error).startswith("fake.pdf is not a PDF pypdf can read (")


async def test_a_pdf_over_the_limit_is_too_large(call, monkeypatch):
    monkeypatch.setattr(pdf_load, "MAX_BYTES", media_load.MIB)
    (call.root / "big.pdf").write_bytes(b"\0" * (media_load.MIB + 1))
    error = await failure(pdf_load.pdf_load, PdfLoadArgs(file_path="big.pdf"), call)
    assert (error.kind, str(error)) == ("too_large", "big.pdf is over 1 MiB, the pdf_load limit")


# audio_load


def wav_of(seconds: float, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        samples = (int(8000 * math.sin(n / 10)) for n in range(int(seconds * rate)))
        audio.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return out.getvalue()


def id3_tag(body: bytes) -> bytes:
    size = len(body)
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + body


def mp3_of(frame_count: int, *, xing: bool = False) -> bytes:
    """An ID3 tag and MPEG-1 Layer III frames of silence; the first a Xing table with `xing`."""
    frame = MP3_HEADER + b"\0" * (MP3_FRAME_BYTES - 4)
    first = MP3_HEADER + b"\0" * 32 + b"Xing" + b"\0" * (MP3_FRAME_BYTES - 40) if xing else frame
    return id3_tag(b"TIT2" + b"\0" * 20) + first + frame * (frame_count - 1) + b"TAG" + b"\0" * 125


async def test_a_wav_is_attached_with_its_duration(call, stored):
    data = wav_of(0.5)
    (call.root / "voice.wav").write_bytes(data)
    outcome = await audio_load.audio_load(AudioLoadArgs(file_path="voice.wav"), call)
    assert the_file(outcome, stored) == data
    assert result_of(outcome) == {
        "file_path": "voice.wav",
        "media_type": "audio/wav",
        "duration_s": 0.5,
        "loaded": True,
    }


@pytest.mark.parametrize(("xing", "counted"), [(False, 20), (True, 19)])
async def test_an_mp3_lasts_as_long_as_its_frames(call, stored, xing, counted):
    data = mp3_of(20, xing=xing)
    (call.root / "song.mp3").write_bytes(data)
    outcome = await audio_load.audio_load(AudioLoadArgs(file_path="song.mp3"), call)
    assert the_file(outcome, stored) == data
    result = result_of(outcome)
    assert (result["media_type"], result["duration_s"]) == (
        "audio/mpeg",
        round(counted * 1152 / 44_100, 3),
    )


async def test_a_wav_wave_cannot_measure_goes_without_a_duration(call, stored):
    data = b"RIFF\x00\x00\x00\x00WAVEjunk"
    (call.root / "odd.wav").write_bytes(data)
    outcome = await audio_load.audio_load(AudioLoadArgs(file_path="odd.wav"), call)
    assert the_file(outcome, stored) == data
    assert result_of(outcome) == {
        "file_path": "odd.wav",
        "media_type": "audio/wav",
        "loaded": True,
    }


async def test_an_id3_tag_without_a_whole_mpeg_frame_is_no_mp3(call):
    data = id3_tag(b"\0" * 10) + MP3_HEADER + b"\0" * (MP3_FRAME_BYTES - 14)  # cut short
    (call.root / "cut.mp3").write_bytes(data)
    error = await failure(audio_load.audio_load, AudioLoadArgs(file_path="cut.mp3"), call)
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "unsupported audio format mp3; convert it with ffmpeg in shell",
    )


@pytest.mark.parametrize(
    ("name", "data", "shown"),
    [
        ("talk.flac", b"fLaC\x00\x00\x00\x22" + b"\0" * 64, "flac"),
        ("talk.m4a", b"\x00\x00\x00\x20ftypM4A " + b"\0" * 64, "mp4/m4a"),
        ("talk.xyz", b"\x01\x02\x03" * 30, "xyz"),
    ],
)
async def test_other_audio_is_refused_with_the_fix(call, stored, name, data, shown):
    (call.root / name).write_bytes(data)
    error = await failure(audio_load.audio_load, AudioLoadArgs(file_path=name), call)
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        f"unsupported audio format {shown}; convert it with ffmpeg in shell",
    )
    assert stored == {}


async def test_audio_over_the_limit_is_too_large(call, monkeypatch):
    monkeypatch.setattr(audio_load, "MAX_BYTES", media_load.MIB)
    (call.root / "long.wav").write_bytes(wav_of(0.1) + b"\0" * media_load.MIB)
    error = await failure(audio_load.audio_load, AudioLoadArgs(file_path="long.wav"), call)
    assert (error.kind, str(error)) == ("too_large", "long.wav is over 1 MiB, the audio_load limit")
