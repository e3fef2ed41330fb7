"""`media.transport = "files_api"` (SPEC §8.2): each file uploaded once per content hash, then sent
by id (`anthropic`, `openai_responses`; other providers send files inline).

Anthropic: `POST {base_url}/files`, multipart `file`, with `anthropic-beta: files-api-2025-04-14`
(which the messages that use the ids carry too). OpenAI: `POST {base_url}/files`, multipart `file`
and `purpose=user_data`. Both answer a file object whose `id` is what a content part names. A failed
upload is a ProviderError like a failed call: retried, then the model falls back.
"""

import hashlib
from typing import Protocol

import httpx
import msgspec

from services.session.providers.http_stream import CONNECT_TIMEOUT_S, http_error
from services.session.providers.protocol import (
    InlineMedia,
    MediaPart,
    ModelRequest,
    ProviderError,
)
from shared.model_config import ModelConfig

FILES_BETA = "files-api-2025-04-14"
ANTHROPIC_VERSION = "2023-06-01"
PROVIDERS = frozenset({"anthropic", "openai_responses"})
UPLOADED_KINDS = frozenset({"image", "document", "file"})  # audio has no file id part


class FileIds(Protocol):
    """Ids of uploads, per API base URL and content hash (`media_store.MediaStore`)."""

    def file_id(self, base_url: str, sha256: str) -> str | None: ...

    def remember(self, base_url: str, sha256: str, file_id: str) -> None: ...


class FileObject(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str = msgspec.field(name="id")


FILE_OBJECT: msgspec.json.Decoder[FileObject] = msgspec.json.Decoder(FileObject)


def uses_files_api(model: ModelConfig) -> bool:
    return model.media.transport == "files_api" and model.provider in PROVIDERS


async def by_id(
    http: httpx.AsyncClient, model: ModelConfig, request: ModelRequest, ids: FileIds | None
) -> ModelRequest:
    """The request with each uploadable file replaced by its id (uploaded first if new); as it
    is for a model that sends files inline, or without `ids` to remember them in."""
    if ids is None or not uses_files_api(model):
        return request
    media: dict[str, MediaPart] = {}
    for key, part in request.media.items():
        if isinstance(part, InlineMedia) and part.kind in UPLOADED_KINDS and not part.file_id:
            file_id = await _file_id(http, model, part, ids)
            part = msgspec.structs.replace(part, data=b"", file_id=file_id)
        media[key] = part
    return msgspec.structs.replace(request, media=media)


async def _file_id(
    http: httpx.AsyncClient, model: ModelConfig, media: InlineMedia, ids: FileIds
) -> str:
    sha256 = hashlib.sha256(media.data).hexdigest()
    known = ids.file_id(model.base_url, sha256)
    if known is not None:
        return known
    file_id = await upload(http, model, media)
    ids.remember(model.base_url, sha256, file_id)
    return file_id


async def upload(http: httpx.AsyncClient, model: ModelConfig, media: InlineMedia) -> str:
    """Upload one file to the model's Files API; its id."""
    url = model.base_url.rstrip("/") + "/files"
    host = httpx.URL(model.base_url).host
    media_type = media.media_type
    if model.provider == "anthropic" and media.kind == "file":
        media_type = "text/plain"  # the documents it takes are PDF or plain text
    files = {"file": (media.file_name, media.data, media_type)}
    form: dict[str, str] = {} if model.provider == "anthropic" else {"purpose": "user_data"}
    timeout = httpx.Timeout(model.timeout_s, connect=CONNECT_TIMEOUT_S)
    try:
        response = await http.post(
            url, headers=_headers(model), files=files, data=form, timeout=timeout
        )
    except httpx.TimeoutException:
        raise ProviderError(f"uploading {media.file_name!r} to {host} timed out") from None
    except httpx.TransportError as exc:
        raise ProviderError(f"upload to {host} failed: {type(exc).__name__} {exc}") from None
    if not response.is_success:
        raise await http_error(response, host, _error_text)
    try:
        return FILE_OBJECT.decode(response.content).file_id
    except msgspec.DecodeError as exc:
        raise ProviderError(f"malformed upload answer from {host}: {exc}") from None


def _headers(model: ModelConfig) -> httpx.Headers:
    headers = httpx.Headers(model.headers)
    if model.provider == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        with_files_beta(headers)
        if model.api_key:
            headers["x-api-key"] = model.api_key
    elif model.api_key:
        headers["Authorization"] = f"Bearer {model.api_key}"
    return headers


def with_files_beta(headers: httpx.Headers) -> None:
    """Add the Files API beta to `anthropic-beta`, beside any beta the config names."""
    betas = [b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()]
    if FILES_BETA not in betas:
        headers["anthropic-beta"] = ",".join([*betas, FILES_BETA])


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    message: str = ""


class ErrorEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorDetail | str | None = None


ERROR_BODY: msgspec.json.Decoder[ErrorEnvelope] = msgspec.json.Decoder(ErrorEnvelope)


def _error_text(raw: bytes) -> tuple[str, str]:
    """Both APIs answer `{"error": {"message": …}}` (Anthropic inside a `type: error` object)."""
    try:
        error = ERROR_BODY.decode(raw).error
    except msgspec.DecodeError:
        return "", ""
    message = error.message if isinstance(error, ErrorDetail) else error or ""
    return message, message
