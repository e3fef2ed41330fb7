"""`provider = "codex"`: a ChatGPT subscription's Codex backend, over a websocket (SPEC §7.2).

One call, one socket: `wss://…/codex/responses` with the subscription's bearer token and account
id, one `response.create` frame, then one Responses stream event per text frame, assembled by
`openai_responses.Assembly` (Codex's reasoning items are kept for Codex alone). A socket dropped
before the first event is opened again up to 5 times (200 ms, doubling); a drop after that is a
transient ProviderError for `model_calls` to retry. An upgrade refused with 401 refreshes the
tokens once and tries once more (`codex_auth`). The socket is closed at the end of every call.
"""

import asyncio
import logging
import platform
import uuid
from collections.abc import Mapping, Sequence

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import HeadersLike
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.http11 import Response

from services.session.providers import api_log
from services.session.providers.codex_auth import CodexAuth, Credentials
from services.session.providers.http_stream import (
    CONNECT_TIMEOUT_S,
    MAX_SILENCE_S,
    REASON_CHARS,
    retry_after_header,
)
from services.session.providers.openai_chat import WireError, error_text, wire_error_message
from services.session.providers.openai_responses import (
    cache_key,
    function_tool,
    session_and_count,
    to_input,
)
from services.session.providers.protocol import (
    AuthError,
    ModelReply,
    ModelRequest,
    OnEvent,
    ProviderError,
    classified,
)
from services.session.providers.responses_stream import EVENT, Assembly
from shared.messages.history import HistoryEvent
from shared.model_config import ModelConfig, ReasoningConfig

BETA = "responses_websockets=2026-02-06"
ORIGINATOR = "codex_cli_rs"
CODEX_VERSION = "0.120.0"  # the Codex CLI release whose wire this module speaks
USER_AGENT = (
    f"{ORIGINATOR}/{CODEX_VERSION} ({platform.system()} {platform.release()}; "
    f"{platform.machine()}) stellaclaw"
)
RECONNECTS = 5  # after a socket dropped before its first event
FIRST_RECONNECT_DELAY_S = 0.2
CLOSE_TIMEOUT_S = 2.0
MAX_FRAME_BYTES = 64 * 1024 * 1024  # `response.completed` repeats the whole output
DEFAULT_EFFORT = "medium"
CONNECTION_LIMIT = "websocket_connection_limit_reached"  # open a new socket and go on
ENCODER = msgspec.json.Encoder()
log = logging.getLogger(__name__)


class WrappedError(msgspec.Struct, frozen=True, kw_only=True):
    """Codex's `error` event: an HTTP status, the API's error, and the headers it would have had."""

    status: int | None = None
    status_code: int | None = None
    error: WireError | None = None
    headers: dict[str, str | int | float | bool | None] | None = None


WRAPPED_ERROR: msgspec.json.Decoder[WrappedError] = msgspec.json.Decoder(WrappedError)


class EarlyDropError(ProviderError):
    """The socket closed before its first event: nothing was said, so opening another is safe."""


# --- the request --------------------------------------------------------------------------------


def request_frame(model: ModelConfig, request: ModelRequest) -> dict[str, object]:
    """The `response.create` frame: the Responses body Codex takes, without `max_output_tokens`
    or cache markers, always with reasoning and its encrypted content."""
    reasoning = model.reasoning or ReasoningConfig()
    frame: dict[str, object] = {
        "type": "response.create",
        "model": model.model,
        "instructions": request.system_prompt,
        "input": to_input(request.history, request.notice, provider="codex", media=request.media),
        "tools": [function_tool(spec) for spec in request.tools],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {
            "effort": reasoning.effort or DEFAULT_EFFORT,
            "summary": reasoning.summary or "auto",
        },
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "stream": True,
    }
    key = cache_key(request.history)
    if key is not None:
        frame["prompt_cache_key"] = key
    if model.service_tier != "default":
        frame["service_tier"] = model.service_tier
    return frame


def session_of(history: Sequence[HistoryEvent]) -> str:
    """The session id Codex groups calls by; a fresh one for a history without a session."""
    found = session_and_count(history)
    return found[0] if found is not None else str(uuid.uuid4())


def socket_url(base_url: str) -> str:
    """`{base_url}/responses` with http → ws and https → wss."""
    scheme, separator, rest = base_url.rstrip("/").partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{scheme}{separator}{rest}/responses"


def headers(model: ModelConfig, credentials: Credentials, session_id: str) -> dict[str, str]:
    """The upgrade's headers; `x-client-request-id` is new for every socket."""
    found = {
        "Authorization": f"Bearer {credentials.access_token}",
        "chatgpt-account-id": credentials.account_id,
        "OpenAI-Beta": BETA,
        "session_id": session_id,
        "x-client-request-id": str(uuid.uuid4()),
        "originator": ORIGINATOR,
    }
    return found | model.headers


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """One call's fixed parts, for each socket it opens."""

    model: ModelConfig
    frame: str  # the `response.create` frame, encoded once
    session_id: str
    on_event: OnEvent
    reconnect_delay_s: float

    @property
    def host(self) -> str:
        return httpx.URL(self.model.base_url).host


# --- the call -----------------------------------------------------------------------------------


class Codex:
    """The Provider for a Codex subscription; `auth` reads and refreshes its tokens."""

    def __init__(
        self, auth: CodexAuth | None = None, *, reconnect_delay_s: float = FIRST_RECONNECT_DELAY_S
    ) -> None:
        self.auth = auth or CodexAuth()
        self.reconnect_delay_s = reconnect_delay_s  # before the first reconnect; then doubling

    async def complete(
        self, http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest, on_event: OnEvent
    ) -> ModelReply:
        frame = ENCODER.encode(request_frame(model, request)).decode()
        call = Call(
            model=model,
            frame=frame,
            session_id=session_of(request.history),
            on_event=on_event,
            reconnect_delay_s=self.reconnect_delay_s,
        )
        try:
            async with asyncio.timeout(model.timeout_s):
                return await self._authorized(http, call)
        except TimeoutError:
            raise ProviderError(f"timed out after {model.timeout_s:g} s") from None

    async def _authorized(self, http: httpx.AsyncClient, call: Call) -> ModelReply:
        """The call with the file's tokens; refused (401/403), once more with refreshed ones."""
        credentials = await self.auth.credentials(http, call.model.auth_file)
        try:
            return await exchange(call, credentials)
        except AuthError as exc:
            if exc.status not in (401, 403):  # SPEC §7.3: one refresh, then once more
                raise
            log.info("codex refused the access token; refreshing it")
        stale = credentials.access_token
        credentials = await self.auth.refresh(http, call.model.auth_file, stale=stale)
        return await exchange(call, credentials)


async def exchange(call: Call, credentials: Credentials) -> ModelReply:
    """One socket's answer, opening another while they drop before their first event."""
    delay_s = call.reconnect_delay_s
    for reconnects in range(RECONNECTS + 1):
        try:
            return await _converse(call, credentials)
        except EarlyDropError as exc:
            if reconnects == RECONNECTS:
                raise ProviderError(f"{exc.reason} ({RECONNECTS + 1} sockets in a row)") from None
            log.info("codex socket dropped before its first event; again in %.1f s", delay_s)
            await asyncio.sleep(delay_s)
            delay_s *= 2
    raise AssertionError("unreachable: the last drop is raised")


async def _converse(call: Call, credentials: Credentials) -> ModelReply:
    url = socket_url(call.model.base_url)
    upgrade = headers(call.model, credentials, call.session_id)
    try:
        with api_log.exchange(call.model, url, upgrade, call.frame):
            async with _open(url, upgrade) as socket:
                try:
                    await socket.send(call.frame)
                except ConnectionClosed as exc:
                    raise EarlyDropError(f"the socket to {call.host} closed: {exc}") from None
                return await _read(socket, call)
    except InvalidStatus as exc:
        raise _refused(exc.response, call.host) from None
    except TimeoutError:  # the opening handshake's; the stream's own become ProviderErrors
        reason = f"no connection to {call.host} within {CONNECT_TIMEOUT_S:g} s"
        raise ProviderError(reason) from None
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        raise ProviderError(f"connection to {call.host} failed: {exc!r}") from None


def _open(url: str, upgrade: Mapping[str, str]) -> connect:
    has_agent = any(name.lower() == "user-agent" for name in upgrade)
    sent: HeadersLike = dict(upgrade)
    return connect(
        url,
        additional_headers=sent,
        user_agent_header=None if has_agent else USER_AGENT,
        open_timeout=CONNECT_TIMEOUT_S,
        close_timeout=CLOSE_TIMEOUT_S,
        max_size=MAX_FRAME_BYTES,
    )


async def _read(socket: ClientConnection, call: Call) -> ModelReply:
    """Events until the response ends; each text frame is one event."""
    assembly = Assembly(call.host, call.on_event, provider="codex")
    silence_s = min(MAX_SILENCE_S, call.model.timeout_s)
    has_event = False
    while True:
        try:
            async with asyncio.timeout(silence_s):
                message = await socket.recv()
        except TimeoutError:
            raise ProviderError(
                f"the socket to {call.host} was silent for {silence_s:g} s"
            ) from None
        except ConnectionClosed as exc:
            if not has_event:
                raise EarlyDropError(f"the socket to {call.host} closed: {exc}") from None
            reason = f"the socket to {call.host} closed before the response finished"
            raise ProviderError(reason) from None
        has_event = True
        api_log.received(message)
        data = message if isinstance(message, str) else message.decode(errors="replace")
        try:
            _raise_wrapped_error(data, call.host)
            assembly.add(data)
        except msgspec.DecodeError as exc:
            raise ProviderError(f"malformed stream event from {call.host}: {exc}") from None
        if assembly.is_finished:
            return assembly.reply()


def _raise_wrapped_error(data: str, host: str) -> None:
    """An `error` event with an HTTP status is that status's error; others are Assembly's."""
    if EVENT.decode(data).type != "error":
        return
    wrapped = WRAPPED_ERROR.decode(data)
    status = wrapped.status or wrapped.status_code
    error = wrapped.error or WireError()
    message = wire_error_message(error) or "no message"
    if error.code == CONNECTION_LIMIT:
        raise ProviderError(f"error in the stream from {host}: {message}")
    if status is None or status < 400:
        return
    retry_after = (wrapped.headers or {}).get("retry-after")
    retry_after_s = retry_after_header(None if retry_after is None else str(retry_after))
    reason = f"HTTP {status} in the stream from {host}: {message}"
    raise classified(reason, status, f"{error.code or ''} {message}", retry_after_s)


def _refused(response: Response, host: str) -> ProviderError:
    """An upgrade answered with an HTTP status instead of 101."""
    status = response.status_code
    raw = bytes(response.body)
    message, detail = error_text(raw)
    message = message or raw.decode(errors="replace")[:REASON_CHARS] or response.reason_phrase
    retry_after_s = retry_after_header(response.headers.get("retry-after"))
    reason = f"HTTP {status} from {host}: {message}"
    return classified(reason, status, detail or message, retry_after_s)
