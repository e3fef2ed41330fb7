"""A fake OpenAI images API: generations (JSON) and edits (multipart), answered from a script.

    async with images_api(api_key="sk-test") as fake:  # a clean exit runs assert_done()
        fake.script(generated(), generated(as_url=True, revised_prompt="a red fox"))
        ...
        fake.requests  # what each call sent: route, headers, fields, image parts
        fake.answered  # the bytes of every image it gave out, in order

`POST /v1/images/generations` takes `{model, prompt, size, n}` as JSON, `POST /v1/images/edits`
the same as form fields plus one or more `image[]` file parts. Each request that passes the
checks takes the next step: `generated(...)` answers `n` distinct PNGs (`png(k)` for the k-th
image of the fake's life) as `b64_json`, or as a `url` the fake serves itself
(`GET /files/<name>`); `api_error(...)` answers OpenAI's error body; `Held()` leaves the request
unanswered until the fake stops. A wrong `Authorization` gets OpenAI's 401, which repeats part of
the key as OpenAI's does; a body the API would refuse, or a request past the script, is answered
400 or 500 and recorded in `failures`.
"""

import asyncio
import base64
import itertools
import re
import struct
import time
import zlib
from contextlib import AbstractAsyncContextManager
from typing import Literal

import msgspec
from aiohttp import web

from tests.kit.scripted_http import serve, serving

_ENCODER = msgspec.json.Encoder()
FIELDS = {"model", "prompt", "size", "n"}
SIZE = re.compile(r"^(\d{2,5}x\d{2,5}|auto)$")


class Generated(msgspec.Struct, frozen=True, kw_only=True):
    """Answer with the request's `n` images."""

    as_url: bool = False  # `data[].url` instead of `data[].b64_json`
    revised_prompt: str | None = None


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    message: str
    code: str | None = None
    retry_after_s: int | None = None  # sent as a `Retry-After` header


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """Never answer (until the fake stops)."""


Step = Generated | ApiError | Held


def generated(*, as_url: bool = False, revised_prompt: str | None = None) -> Generated:
    return Generated(as_url=as_url, revised_prompt=revised_prompt)


def api_error(
    status: int, message: str, *, code: str | None = None, retry_after_s: int | None = None
) -> ApiError:
    return ApiError(status=status, message=message, code=code, retry_after_s=retry_after_s)


class ImagePart(msgspec.Struct, frozen=True, kw_only=True):
    """One `image[]` part of an edit."""

    filename: str
    content_type: str
    data: bytes


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """One request as it came: JSON values, or form fields as strings."""

    route: Literal["generations", "edits"]
    headers: dict[str, str]  # names lower-cased
    fields: dict[str, object]
    images: list[ImagePart] = []


def png(number: int, side: int = 2) -> bytes:
    """A small valid PNG of one colour, different for each `number` below 256."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    colour = bytes(((number * 53) % 256, (number * 97) % 256, (number * 193) % 256))
    rows = b"".join(b"\x00" + colour * side for _ in range(side))
    pieces = [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(rows)), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(pieces)


class ImagesServer:
    """The images endpoints on 127.0.0.1 and a free port; `base_url` goes into `images.base_url`."""

    title = "fake images API"

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[Received] = []
        self.answered: list[bytes] = []
        self.failures: list[str] = []
        self._steps: list[Step] = []
        self._files: dict[str, bytes] = {}
        self._numbers = itertools.count(1)
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def script(self, *steps: Step) -> None:
        self._steps.extend(steps)

    def assert_done(self) -> None:
        problems = list(self.failures)
        if self._steps:
            problems.append(f"{len(self._steps)} scripted step(s) unused: {self._steps!r}")
        if problems:
            raise AssertionError(f"{self.title}: " + "; ".join(problems))

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/images/generations", self.generations)
        app.router.add_post("/v1/images/edits", self.edits)
        app.router.add_get("/files/{name}", self.download)
        app.router.add_route("*", "/{tail:.*}", self._unexpected)
        self._runner, self._port = await serve(app)

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def generations(self, request: web.Request) -> web.StreamResponse:
        if not self._is_authorized(request):
            return self._key_refused(request)
        if request.content_type != "application/json":
            return self._refuse(f"generations sent as {request.content_type}, not JSON")
        try:
            fields = msgspec.json.decode(await request.read(), type=dict[str, object])
        except msgspec.DecodeError as exc:
            return self._refuse(f"We could not parse the JSON body of your request: {exc}")
        self.requests.append(Received(route="generations", headers=lower(request), fields=fields))
        return await self._answer(fields)

    async def edits(self, request: web.Request) -> web.StreamResponse:
        if not self._is_authorized(request):
            return self._key_refused(request)
        if request.content_type != "multipart/form-data":
            return self._refuse(f"edits sent as {request.content_type}, not multipart/form-data")
        fields: dict[str, object] = {}
        images: list[ImagePart] = []
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField) and name == "image[]":
                part = ImagePart(
                    filename=value.filename, content_type=value.content_type, data=value.file.read()
                )
                images.append(part)
            elif isinstance(value, str):
                fields[name] = value
            else:
                return self._refuse(f"Unexpected file part {name!r}")
        received = Received(route="edits", headers=lower(request), fields=fields, images=images)
        self.requests.append(received)
        if not images:
            return self._refuse("An image is required: send one or more image[] parts")
        numeric = dict(fields)
        if isinstance(fields.get("n"), str) and str(fields["n"]).isdigit():
            numeric["n"] = int(str(fields["n"]))
        return await self._answer(numeric)

    async def download(self, request: web.Request) -> web.StreamResponse:
        data = self._files.get(request.match_info["name"])
        if data is None:
            self.failures.append(f"download of an unknown file {request.path}")
            return error(404, "No such file")
        return web.Response(body=data, content_type="image/png")

    async def _answer(self, fields: dict[str, object]) -> web.StreamResponse:
        refusal = refused(fields)
        if refusal:
            return self._refuse(refusal)
        if not self._steps:
            self.failures.append(f"request {len(self.requests)} came past the end of the script")
            return error(500, "the fake images API has no scripted answer left")
        step = self._steps.pop(0)
        match step:
            case Held():
                await self._released.wait()
                return error(503, "the fake images API stopped")
            case ApiError():
                headers = {}
                if step.retry_after_s is not None:
                    headers["Retry-After"] = str(step.retry_after_s)
                return error(step.status, step.message, code=step.code, headers=headers)
            case Generated():
                count = fields["n"]
                assert isinstance(count, int)
                items = [self._item(step) for _ in range(count)]
                body = {"created": int(time.time()), "data": items}
                return web.Response(body=_ENCODER.encode(body), content_type="application/json")

    def _item(self, step: Generated) -> dict[str, str]:
        data = png(next(self._numbers))
        self.answered.append(data)
        item: dict[str, str] = {}
        if step.as_url:
            name = f"img-{len(self.answered)}.png"
            self._files[name] = data
            item["url"] = f"http://127.0.0.1:{self._port}/files/{name}"
        else:
            item["b64_json"] = base64.b64encode(data).decode("ascii")
        if step.revised_prompt is not None:
            item["revised_prompt"] = step.revised_prompt
        return item

    def _is_authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == (
            f"Bearer {self.api_key}"
        )

    def _key_refused(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        shown = f"{given[:5]}***{given[-2:]}" if len(given) > 7 else given
        message = (
            f"Incorrect API key provided: {shown}. You can find your API key at"
            " https://platform.openai.com/account/api-keys."
        )
        return error(401, message, code="invalid_api_key")

    def _refuse(self, message: str) -> web.StreamResponse:
        self.failures.append(f"request refused: {message}")
        return error(400, message)

    async def _unexpected(self, request: web.Request) -> web.StreamResponse:
        self.failures.append(f"unexpected request {request.method} {request.path}")
        return error(404, f"Invalid URL ({request.method} {request.path})")


def lower(request: web.Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def refused(fields: dict[str, object]) -> str:
    """Why the API would refuse these parameters, or ""."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        return f"Unrecognized request argument supplied: {unknown[0]}"
    missing = sorted(FIELDS - set(fields))
    if missing:
        return f"Missing required parameter: {missing[0]!r}."
    prompt, size, count = fields["prompt"], fields["size"], fields["n"]
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 32_000:
        return "Invalid 'prompt': expected a string of 1 to 32000 characters."
    if not isinstance(size, str) or not SIZE.match(size):
        return f"Invalid value: {size!r}. Supported values are: '1024x1024', '1536x1024', ..."
    if not isinstance(count, int) or not 1 <= count <= 10:
        return f"Invalid 'n': {count!r}; expected an integer from 1 to 10."
    return ""


def error(
    status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """OpenAI's error body."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.Response(
        status=status,
        body=_ENCODER.encode(body),
        content_type="application/json",
        headers=headers or {},
    )


def images_api(api_key: str | None = None) -> AbstractAsyncContextManager[ImagesServer]:
    """A running fake; on a clean exit, `assert_done()`."""
    return serving(ImagesServer(api_key=api_key))
