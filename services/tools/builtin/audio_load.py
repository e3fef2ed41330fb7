"""`audio_load` (SPEC §5.5): attach a workspace WAV or MP3 for the model (SPEC §8.3).

The format is told by the bytes, not the name. The duration comes from stdlib `wave` for WAV and
from a walk over the MPEG frame headers for MP3: that walk is some forty lines, exact for constant
and variable bit rates alike, and spares the tools service a tag library (mutagen) for one number.
A duration that cannot be known is left out.
"""

import asyncio
import io
import wave
from pathlib import PurePosixPath
from typing import Annotated

import msgspec
from msgspec import Meta

from services.tools.builtin.media_load import MIB, attach, check_position, file_name, read
from services.tools.results import Attached, Result, ToolError
from services.tools.workspace import ToolCall

MAX_BYTES = 25 * MIB
MAX_PER_BATCH = 2
# What other audio looks like, to name it in the refusal: (offset, magic bytes, name).
OTHER_FORMATS = [
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (4, b"ftyp", "mp4/m4a"),
    (0, b"FORM", "aiff"),
    (0, b"#!AMR", "amr"),
    (0, b"\x1aE\xdf\xa3", "webm/matroska"),
    (0, b"\x30\x26\xb2\x75", "wma/asf"),
]
# MPEG audio frame headers (ISO 11172-3, 13818-3): kbit/s by (is MPEG-1, layer) and index 1-14.
BITRATES_KBPS = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
SYNC_SEARCH_BYTES = 64 * 1024  # junk tolerated before the first frame


class AudioLoadArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Listen to an audio file from the workspace: it is given to you with the result. WAV or
    MP3 only (convert others with ffmpeg in shell); up to 25 MiB; at most 2 per batch."""

    file_path: Annotated[
        str, Meta(min_length=1, description="the WAV or MP3 file, relative to the workspace")
    ]


class AudioLoadResult(Result, frozen=True, kw_only=True):
    file_path: str
    media_type: str
    duration_s: float | None = None  # left out when it cannot be known
    loaded: bool


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """One MPEG audio frame header, decoded."""

    length: int  # bytes, header included
    samples: int
    sample_rate: int


async def audio_load(args: AudioLoadArgs, call: ToolCall) -> Attached:
    check_position(call, "audio_load", MAX_PER_BATCH)
    data = await read(call, args.file_path, MAX_BYTES, "audio_load")
    media_type = sniff(data, args.file_path)
    measure = wav_duration_s if media_type == "audio/wav" else mp3_duration_s
    duration_s = await asyncio.to_thread(measure, data)
    name = file_name(args.file_path)
    attachment = await attach(call, args.file_path, name, media_type, data)
    result = AudioLoadResult(
        file_path=args.file_path,
        media_type=media_type,
        duration_s=None if duration_s is None else round(duration_s, 3),
        loaded=True,
    )
    return Attached(result=result, attachments=[attachment])


def sniff(data: bytes, path: str) -> str:
    """`audio/wav` or `audio/mpeg`, told by the bytes; anything else is refused, named."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if _audio_start(data) is not None:
        return "audio/mpeg"
    known = (name for offset, magic, name in OTHER_FORMATS if data[offset:].startswith(magic))
    suffix = PurePosixPath(path).suffix.lstrip(".").lower()
    shown = next(known, None) or suffix or "(unknown)"
    message = f"unsupported audio format {shown}; convert it with ffmpeg in shell"
    raise ToolError("invalid_arguments", message)


def wav_duration_s(data: bytes) -> float | None:
    """Frames over rate, for the PCM WAV files `wave` reads; None for others (float, ADPCM)."""
    try:
        with wave.open(io.BytesIO(data)) as audio:
            rate = audio.getframerate()
            return audio.getnframes() / rate if rate else None
    except (wave.Error, EOFError):
        return None


def mp3_duration_s(data: bytes) -> float | None:
    """The sum of the frames' durations, from the first frame to the first break in them."""
    start = _audio_start(data)
    if start is None:
        return None
    offset, frame = start
    head = data[offset : offset + 64]
    # A VBR file's first frame may be its Xing/Info table: silence that is not in the audio.
    total_s = -frame.samples / frame.sample_rate if b"Xing" in head or b"Info" in head else 0.0
    found: Frame | None = frame
    while found is not None and offset + found.length <= len(data):
        total_s += found.samples / found.sample_rate
        offset += found.length
        found = header(data[offset : offset + 4])
    return total_s if total_s > 0 else None


def header(raw: bytes) -> Frame | None:
    """The frame header in four bytes, or None when they are not one."""
    if len(raw) < 4 or raw[0] != 0xFF or raw[1] & 0xE0 != 0xE0:
        return None
    version = (raw[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    layer = 4 - ((raw[1] >> 1) & 3)  # 4 is reserved
    bitrate_index = raw[2] >> 4
    rate_index = (raw[2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values, or free format (its frame length is not in the header)
    is_mpeg1 = version == 3
    bitrate = BITRATES_KBPS[is_mpeg1, layer][bitrate_index - 1] * 1000
    sample_rate = SAMPLE_RATES[version][rate_index]
    padding = (raw[2] >> 1) & 1
    if layer == 1:
        return Frame(
            length=(12 * bitrate // sample_rate + padding) * 4, samples=384, sample_rate=sample_rate
        )
    samples = 576 if layer == 3 and not is_mpeg1 else 1152
    length = samples // 8 * bitrate // sample_rate + padding
    return Frame(length=length, samples=samples, sample_rate=sample_rate)


def _id3_end(data: bytes) -> int:
    """Where the audio starts after an ID3v2 tag (its size is 4 bytes of 7 bits)."""
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _audio_start(data: bytes) -> tuple[int, Frame] | None:
    """The first MPEG frame: right at the start, or after an ID3v2 tag and some junk."""
    start = _id3_end(data)
    return _first_frame(data, start, search_bytes=SYNC_SEARCH_BYTES if start else 0)


def _first_frame(data: bytes, start: int, *, search_bytes: int) -> tuple[int, Frame] | None:
    """The first frame at or after `start` whose next frame follows it (or the file ends)."""
    end = min(len(data) - 3, start + search_bytes + 1)
    offset = data.find(b"\xff", start, end)
    while offset != -1:
        frame = header(data[offset : offset + 4])
        if frame is not None:
            after = offset + frame.length
            if after == len(data) or header(data[after : after + 4]) is not None:
                return offset, frame
        offset = data.find(b"\xff", offset + 1, end)
    return None
