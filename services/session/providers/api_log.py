"""SPEC §7.6: the request and response bodies of model calls, redacted, one JSON line per call.

`logging.api_bodies` is `off` (the default), `preview` (each body's first 12,000 characters) or
`full`. The turn says which session and turn its calls belong to with `for_turn(...)`, a context
variable, so the Provider protocol stays as it is. A call made inside it is logged by
`exchange(...)` (`http_stream.post` does this for every HTTP provider; a websocket provider does
it itself and hands each frame to `received`) to `<workdir>/logs/api/<session_id>/<turn_id>.jsonl`
(directories 0700, files 0600), never to the service log. The call only keeps references to what
it sent and copies of what its reader took; redacting and writing run in a worker thread, in
order, and an OSError is logged once per turn as a warning while the calls go on. Leaving
`for_turn` waits for the last lines to be written.

Redacted: each request header, and each JSON key (in request and response bodies, in each SSE
`data:` line and each websocket frame), whose name contains a word of SECRET_WORDS (`-` and `_`
ignored, so `api_key`, `x-api-key` and `apiKey` all count). Under such a key every string becomes
`***`; numbers stay, so `max_tokens` and the usage counts are still readable. The model's own
`api_key` value is scrubbed wherever else it appears (`shared.redaction`).
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

import httpx
import msgspec

from services.session.providers.protocol import ProviderError
from shared import redaction
from shared.config import Config
from shared.ids import SessionId, TurnId
from shared.model_config import ModelConfig

Mode = Literal["off", "preview", "full"]
PREVIEW_CHARS = 12_000
SECRET_WORDS = ("authorization", "apikey", "token", "secret", "password", "cookie", "credential")
DIR_MODE = 0o700
FILE_MODE = 0o600
TOO_DEEP = "[JSON nested too deeply to redact: not logged]"
log = logging.getLogger(__name__)


# --- redaction: pure functions ------------------------------------------------------------------


def is_secret(name: str) -> bool:
    """Whether a header or JSON key names a secret (`X-Api-Key`, `access_token`, `Cookie`)."""
    squeezed = name.lower().replace("-", "").replace("_", "")
    return any(word in squeezed for word in SECRET_WORDS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: redaction.MASK if is_secret(name) else value for name, value in headers.items()}


def redact_json(node: object, *, is_under_secret: bool = False) -> object:
    """`node` with every string under a secret key (at any depth) replaced by `***`."""
    if isinstance(node, dict):
        return {
            key: redact_json(value, is_under_secret=is_under_secret or is_secret(str(key)))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [redact_json(item, is_under_secret=is_under_secret) for item in node]
    return redaction.MASK if is_under_secret and isinstance(node, str) else node


def redact_body(text: str) -> str:
    """A body with its JSON redacted: the whole body if it is JSON, else each line that is
    (an SSE `data:` line, a websocket frame); anything else is kept as it is."""
    whole = _redacted_json(text)
    if whole is not None:
        return whole
    return "\n".join(_redacted_line(line) for line in text.split("\n"))


def _redacted_line(line: str) -> str:
    is_data = line.startswith("data:")
    rest = line.removeprefix("data:").lstrip() if is_data else line
    redacted = _redacted_json(rest)
    if redacted is None:
        return line
    return f"data: {redacted}" if is_data else redacted


def _redacted_json(text: str) -> str | None:
    """The JSON `text` redacted and re-encoded; None when it is not JSON."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        node: object = msgspec.json.decode(text)
        return msgspec.json.encode(redact_json(node)).decode()
    except msgspec.DecodeError:
        return None
    except RecursionError:  # it cannot be walked, so it cannot be shown
        return TOO_DEEP


def clipped(text: str, mode: Mode) -> str:
    """`preview`: the first PREVIEW_CHARS characters and a marker saying how many were left out."""
    if mode != "preview" or len(text) <= PREVIEW_CHARS:
        return text
    return f"{text[:PREVIEW_CHARS]}[… {len(text) - PREVIEW_CHARS} more characters not logged]"


# --- what one line holds ------------------------------------------------------------------------


class ApiLine(msgspec.Struct, frozen=True, kw_only=True):
    """One model call: a line of `<turn_id>.jsonl`."""

    started_at: datetime
    session_id: str
    turn_id: str
    model: str  # the `[models.<name>]` called ("" if this turn's config does not name it)
    provider: str
    url: str
    status: int | None  # None: no answer (no connection, a timeout before the headers, websocket)
    duration_s: float
    request_headers: dict[str, str]
    request_body: str
    response_body: str  # as read: SSE lines, an error body, or websocket frames one per line
    error: str | None = None  # how the call failed, as the turn was told


class TeeStream(httpx.AsyncByteStream):
    """A response's byte stream that keeps a copy of each chunk its reader takes."""

    def __init__(self, inner: httpx.AsyncByteStream, chunks: list[bytes]) -> None:
        self.inner = inner
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.chunks.append(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class Exchange:
    """One model call while it runs: what was sent, and what has been read of the answer."""

    def __init__(
        self,
        turn: "ApiLog",
        model: ModelConfig,
        url: str,
        headers: Mapping[str, str],
        body: bytes | str,
    ) -> None:
        self.turn = turn
        self.model = model
        self.url = url
        self.headers = dict(headers)
        self.body = body
        self.started_at = datetime.now(UTC)
        self.started_s = time.monotonic()
        self.duration_s = 0.0
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}  # how to decode the body
        self.chunks: list[bytes] = []
        self.error: str | None = None
        self._token: Token[Exchange | None] | None = None

    def watch(self, response: httpx.Response) -> None:
        """Note the status, and copy every byte of the body that the response's readers take."""
        self.status = response.status_code
        for name in ("content-type", "content-encoding"):
            if value := response.headers.get(name):
                self.response_headers[name] = value
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = TeeStream(response.stream, self.chunks)

    def received(self, data: bytes | str) -> None:
        """One piece of an answer that came some other way (a websocket frame): one line."""
        self.chunks.append((data.encode() if isinstance(data, str) else data) + b"\n")

    def response_text(self) -> str:
        """The body as read, decoded as httpx decodes it (gzip, charset)."""
        raw = b"".join(self.chunks)
        if not self.response_headers:
            return raw.decode(errors="replace")
        return httpx.Response(200, headers=self.response_headers, content=raw).text

    def __enter__(self) -> "Exchange":
        self._token = _exchange.set(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _exchange.reset(self._token)
        self.duration_s = time.monotonic() - self.started_s
        if error is not None:
            self.error = error.reason if isinstance(error, ProviderError) else type(error).__name__
        self.turn.record(self)


# --- the turn's log and its writer --------------------------------------------------------------


class ApiLog:
    """One turn's API log: its file, and its calls still to be written (in order, by one task)."""

    def __init__(
        self, config: Config, workdir: Path, session_id: SessionId, turn_id: TurnId
    ) -> None:
        self.mode = config.logging.api_bodies
        self.models = config.models
        self.session_id = session_id
        self.turn_id = turn_id
        self.path = workdir / "logs" / "api" / session_id / f"{turn_id}.jsonl"
        self.queue: list[Exchange] = []
        self.writer: asyncio.Task[None] | None = None
        self.has_warned = False

    def record(self, call: Exchange) -> None:
        """Write a finished call's line soon, off the event loop."""
        self.queue.append(call)
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._drain(), name=f"api log {self.turn_id}")

    async def flushed(self) -> None:
        """Wait until every recorded call is written (or has failed to be)."""
        if self.writer is not None:
            await asyncio.shield(self.writer)

    async def _drain(self) -> None:
        while self.queue:
            calls, self.queue = self.queue, []
            await asyncio.to_thread(self._write, calls)

    def _write(self, calls: list[Exchange]) -> None:
        """In a worker thread: redact, encode and append the calls' lines."""
        try:
            _append(self.path, b"".join(self._line(call) for call in calls))
        except OSError as exc:
            if not self.has_warned:
                self.has_warned = True
                log.warning("API log %s not written (logging.api_bodies): %s", self.path, exc)

    def _line(self, call: Exchange) -> bytes:
        line = ApiLine(
            started_at=call.started_at,
            session_id=self.session_id,
            turn_id=self.turn_id,
            model=next((name for name, m in self.models.items() if m == call.model), ""),
            provider=call.model.provider,
            url=call.url,
            status=call.status,
            duration_s=round(call.duration_s, 3),
            request_headers=redact_headers(call.headers),
            request_body=self._body(call.body),
            response_body=self._body(call.response_text()),
            error=call.error,
        )
        secrets = redaction.json_forms([call.model.api_key] if call.model.api_key else [])
        return redaction.scrub_json(msgspec.json.encode(line), secrets) + b"\n"

    def _body(self, body: bytes | str) -> str:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return clipped(redact_body(text), self.mode)


def _append(path: Path, data: bytes) -> None:
    path.parent.parent.parent.mkdir(parents=True, exist_ok=True)  # logs/, shared with services
    for directory in (path.parent.parent, path.parent):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(descriptor, "ab") as out:
        out.write(data)


# --- the surface: the turn, http_stream and websocket providers ---------------------------------

_turn: ContextVar[ApiLog | None] = ContextVar("api_log_turn", default=None)
_exchange: ContextVar[Exchange | None] = ContextVar("api_log_exchange", default=None)
_IDLE: contextlib.nullcontext[None] = contextlib.nullcontext()


@contextlib.asynccontextmanager
async def for_turn(
    config: Config, workdir: Path, session_id: SessionId, turn_id: TurnId
) -> AsyncIterator[None]:
    """Log the model calls made inside, as `config.logging.api_bodies` says, to
    `<workdir>/logs/api/<session_id>/<turn_id>.jsonl`; leaving waits for their lines."""
    if config.logging.api_bodies == "off":
        yield
        return
    turn = ApiLog(config, workdir, session_id, turn_id)
    token = _turn.set(turn)
    try:
        yield
    finally:
        _turn.reset(token)
        await turn.flushed()


def exchange(
    model: ModelConfig, url: str, headers: Mapping[str, str], body: bytes | str
) -> contextlib.AbstractContextManager[Exchange | None]:
    """Log the call made inside (its duration, and its error if it raises); outside a logged
    turn a no-op. Inside, `watch` an httpx response, or hand each websocket frame to `received`."""
    turn = _turn.get()
    return _IDLE if turn is None else Exchange(turn, model, url, headers, body)


def watch(response: httpx.Response) -> None:
    """Copy the response's status and body into the current exchange's line, if one is logged."""
    current = _exchange.get()
    if current is not None:
        current.watch(response)


def received(data: bytes | str) -> None:
    """Add a websocket frame (or another piece of an answer) to the current exchange's line."""
    current = _exchange.get()
    if current is not None:
        current.received(data)
