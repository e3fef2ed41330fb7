"""The HTTP side every streamed provider shares: one POST read as a stream (SPEC §7.1-7.3).

The whole call runs under `timeout_s`; a stream silent for `min(120, timeout_s)` s has stalled;
connecting may take 10 s. A non-2xx answer becomes a ProviderError classified by its status and
its error body (each wire format says how to read its body); transport failures are transient.
Inside a turn that logs API bodies (SPEC §7.6, `api_log.for_turn`) each call is one logged line.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import httpx

from services.session.providers import api_log
from services.session.providers.protocol import ModelReply, ProviderError, classified
from shared.model_config import ModelConfig

CONNECT_TIMEOUT_S = 10.0
MAX_SILENCE_S = 120.0  # a stream silent this long (or timeout_s, if shorter) has stalled
MAX_RETRY_AFTER_S = 60.0
REASON_CHARS = 160
ReadStream = Callable[[httpx.Response], Awaitable[ModelReply]]
# An error body's message for the user, and the text its kind is told from (codes included).
ErrorText = Callable[[bytes], tuple[str, str]]


async def post(
    http: httpx.AsyncClient,
    model: ModelConfig,
    request: tuple[str, Mapping[str, str], bytes],
    read: ReadStream,
    error_text: ErrorText,
) -> ModelReply:
    """POST `(path, headers, body)` to the model's base URL and `read` the answer."""
    path, headers, body = request
    with api_log.exchange(model, url_of(model, path), headers, body):  # no-op unless logging
        try:
            async with asyncio.timeout(model.timeout_s):
                return await _post(http, model, request, read, error_text)
        except TimeoutError:
            raise ProviderError(f"timed out after {model.timeout_s:g} s") from None


def url_of(model: ModelConfig, path: str) -> str:
    return model.base_url.rstrip("/") + path


async def _post(
    http: httpx.AsyncClient,
    model: ModelConfig,
    request: tuple[str, Mapping[str, str], bytes],
    read: ReadStream,
    error_text: ErrorText,
) -> ModelReply:
    path, headers, body = request
    host = httpx.URL(model.base_url).host
    silence_s = min(MAX_SILENCE_S, model.timeout_s)
    url = url_of(model, path)
    timeout = httpx.Timeout(silence_s, connect=CONNECT_TIMEOUT_S)
    try:
        async with http.stream(
            "POST", url, content=body, headers=headers, timeout=timeout
        ) as response:
            api_log.watch(response)  # the API log's copy of what is read, if the turn keeps one
            if not response.is_success:
                raise await http_error(response, host, error_text)
            return await read(response)
    except httpx.ConnectTimeout:
        raise ProviderError(f"no connection to {host} within {CONNECT_TIMEOUT_S:g} s") from None
    except httpx.TimeoutException:
        raise ProviderError(f"the stream from {host} was silent for {silence_s:g} s") from None
    except httpx.TransportError as exc:
        raise ProviderError(f"connection to {host} failed: {type(exc).__name__} {exc}") from None


def bearer_headers(model: ModelConfig) -> dict[str, str]:
    """A JSON POST read as SSE, the model's extra headers, and its key as a Bearer token."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    headers |= model.headers
    if model.api_key:
        headers["Authorization"] = f"Bearer {model.api_key}"
    return headers


async def http_error(response: httpx.Response, host: str, error_text: ErrorText) -> ProviderError:
    raw = await response.aread()
    message, detail = error_text(raw)
    message = message or raw.decode(errors="replace")[:REASON_CHARS] or response.reason_phrase
    status = response.status_code
    retry_after_s = retry_after_header(response.headers.get("retry-after"))
    reason = f"HTTP {status} from {host}: {message}"
    return classified(reason, status, detail or message, retry_after_s)


def retry_after_header(header: str | None) -> float | None:
    """Seconds from a `Retry-After` header (the numeric form), capped; None without one."""
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(header))) if header else None
    except ValueError:
        return None
