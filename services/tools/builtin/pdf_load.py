"""`pdf_load` (SPEC §5.5): attach a workspace PDF, or some of its pages, for the model (SPEC §8.3).

pypdf (pure Python) counts and cuts the pages; it is imported by `cut` itself, the first time a
PDF is loaded, so a tools service that never loads one does not hold it in memory. `cut` parses
the whole file, so it runs in a thread.
"""

import asyncio
import io
import re
from pathlib import PurePosixPath
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from services.tools.builtin.media_load import MIB, attach, check_position, file_name, read
from services.tools.results import Attached, Result, ToolError
from services.tools.workspace import ToolCall

MAX_BYTES = 32 * MIB
MAX_PAGES = 100  # attached at once
MAX_PER_BATCH = 2
MEDIA_TYPE = "application/pdf"
_PART = re.compile(r"^(?P<first>\d+)(?:-(?P<last>\d+))?$")


class PdfLoadArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read a PDF from the workspace: the file (or the pages you choose) is shown to you with the
    result. Up to 32 MiB and 100 pages at a time; at most 2 per batch."""

    file_path: Annotated[str, Meta(min_length=1, description="the PDF, relative to the workspace")]
    pages: (
        Annotated[
            str,
            Meta(min_length=1, description='pages to attach, 1-based, e.g. "1-5,9" (default all)'),
        ]
        | UnsetType
    ) = UNSET


class PdfLoadResult(Result, frozen=True, kw_only=True):
    file_path: str
    pages: str  # the pages attached, as ranges: "1-5,9"
    page_count: int  # pages in the file, attached or not
    loaded: bool


class Cut(msgspec.Struct, frozen=True, kw_only=True):
    """The PDF as attached: the file itself or a new one of the chosen pages."""

    data: bytes
    pages: list[int]  # 1-based, in the order attached
    page_count: int  # in the file


async def pdf_load(args: PdfLoadArgs, call: ToolCall) -> Attached:
    check_position(call, "pdf_load", MAX_PER_BATCH)
    chosen = None if isinstance(args.pages, UnsetType) else parse_pages(args.pages)
    data = await read(call, args.file_path, MAX_BYTES, "pdf_load")
    pdf = await asyncio.to_thread(cut, data, chosen, args.file_path)
    shown = ranges(pdf.pages)
    if chosen is None:
        name = file_name(args.file_path)
    else:
        stem = PurePosixPath(args.file_path).stem or "document"
        name = f"{stem} (pages {shown}).pdf"
    attachment = await attach(call, args.file_path, name, MEDIA_TYPE, pdf.data)
    result = PdfLoadResult(
        file_path=args.file_path, pages=shown, page_count=pdf.page_count, loaded=True
    )
    return Attached(result=result, attachments=[attachment])


def parse_pages(spec: str) -> list[int]:
    """`"1-5,9"` as `[1, 2, 3, 4, 5, 9]`: in the order given, each page once."""
    chosen: dict[int, None] = {}  # ordered, without repeats
    for part in spec.split(","):
        found = _PART.match(part.strip())
        if found is None:
            raise ToolError("invalid_arguments", _bad_spec(spec, f"{part.strip()!r} is no page"))
        first = int(found["first"])
        last = int(found["last"] or first)
        if first < 1 or last < first:
            reason = f"{part.strip()!r} is not a range of pages from 1 up"
            raise ToolError("invalid_arguments", _bad_spec(spec, reason))
        if last - first >= MAX_PAGES:  # also keeps "1-999999999" from filling memory
            raise _too_many(spec, last - first + 1)
        chosen.update(dict.fromkeys(range(first, last + 1)))
    if len(chosen) > MAX_PAGES:
        raise _too_many(spec, len(chosen))
    return list(chosen)


def ranges(pages: list[int]) -> str:
    """`[1, 2, 3, 9]` as `"1-3,9"`: runs of consecutive pages joined."""
    runs: list[list[int]] = []
    for page in pages:
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def cut(data: bytes, chosen: list[int] | None, path: str) -> Cut:
    """The PDF in `data`, or a new one of the `chosen` pages; `path` names it in errors."""
    from pypdf import PdfReader, PdfWriter  # lazy: see the module docstring
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            message = f"{path} is password-protected; decrypt it in shell (qpdf --decrypt)"
            raise ToolError("invalid_arguments", message)
        count = len(reader.pages)
        if chosen is None:
            if count > MAX_PAGES:
                raise _too_many(None, count, path)
            return Cut(data=data, pages=list(range(1, count + 1)), page_count=count)
        past = [page for page in chosen if page > count]
        if past:
            message = f"page {past[0]} is past the end of {path} ({count} pages)"
            raise ToolError("invalid_arguments", message)
        writer = PdfWriter()
        for page in chosen:
            writer.add_page(reader.pages[page - 1])
        out = io.BytesIO()
        writer.write(out)
    except (PyPdfError, ValueError, KeyError, IndexError, TypeError, OSError) as exc:
        why = str(exc) or type(exc).__name__
        raise ToolError(
            "invalid_arguments", f"{path} is not a PDF pypdf can read ({why})"
        ) from None
    return Cut(data=out.getvalue(), pages=chosen, page_count=count)


def _bad_spec(spec: str, reason: str) -> str:
    return f'pages {spec!r} is not a page list like "1-5,9": {reason}'


def _too_many(spec: str | None, count: int, path: str = "") -> ToolError:
    if spec is None:
        message = f'{path} has {count} pages; load at most {MAX_PAGES} at a time with pages="1-100"'
    else:
        message = f"pages {spec!r} selects {count} pages; choose at most {MAX_PAGES} at a time"
    return ToolError("too_large", message)
