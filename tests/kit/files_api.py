"""A Files API beside the fake Messages and Responses servers (`media.transport = "files_api"`).

    async with anthropic_files_api(api_key=KEY) as fake:  # the Messages fake + POST /v1/files
        ...
    fake.uploads  # every upload: its id, file name, media type, bytes (and OpenAI's `purpose`)

Uploads are checked as each API checks them (Anthropic: the `files-api-2025-04-14` beta and only a
`file` field; OpenAI: a `purpose`); a request that names a file id never uploaded, or (Anthropic)
names one without the beta header, is refused with 400 and recorded in `failures`.
"""

import itertools
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Literal

import msgspec
from aiohttp import web

from tests.kit.anthropic_api import AnthropicServer
from tests.kit.anthropic_wire import MessagesBody
from tests.kit.media_wire import DocumentBlock, FileSource, ImageBlock, InputFile, InputImage
from tests.kit.openai_responses_api import Message, OpenAIResponsesServer, ResponsesBody
from tests.kit.scripted_http import Handler, serving

FILES_BETA = "files-api-2025-04-14"
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
_ENCODER = msgspec.json.Encoder()


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    """One file as it was uploaded."""

    file_id: str
    filename: str
    media_type: str
    data: bytes
    purpose: str | None = None
    headers: dict[str, str] = {}  # names lower-cased


class FilesApi:
    """`POST /v1/files` in Anthropic's or OpenAI's flavour; the uploads it took."""

    def __init__(
        self,
        flavour: Literal["anthropic", "openai"],
        server: AnthropicServer | OpenAIResponsesServer,
    ) -> None:
        self.flavour = flavour
        self.server = server
        self.uploads: list[Upload] = []
        self._numbers = itertools.count(1)

    def knows(self, file_id: str) -> bool:
        return any(upload.file_id == file_id for upload in self.uploads)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        if not self._is_authorized(headers):
            return self.server.error(401, "invalid credentials for the Files API")
        form = await request.post()
        file = form.get("file")
        refusal = self._refusal(headers, set(form), file)
        if refusal or not isinstance(file, web.FileField):
            self.server.failures.append(f"upload refused: {refusal}")
            return self.server.error(400, refusal)
        purpose = form.get("purpose")
        upload = Upload(
            file_id=self._id(),
            filename=file.filename,
            media_type=file.content_type,
            data=file.file.read(),
            purpose=purpose if isinstance(purpose, str) else None,
            headers=headers,
        )
        self.uploads.append(upload)
        body = _ENCODER.encode(self._file_object(upload))
        return web.Response(body=body, content_type="application/json")

    def _is_authorized(self, headers: dict[str, str]) -> bool:
        key = self.server.api_key
        if key is None:
            return True
        if self.flavour == "openai":
            return headers.get("authorization") == f"Bearer {key}"
        return headers.get("x-api-key") == key

    def _refusal(self, headers: dict[str, str], fields: set[str], file: object) -> str:
        if not isinstance(file, web.FileField):
            return "file: a file part is required"
        if self.flavour == "openai":
            return "" if fields == {"file", "purpose"} else "purpose: a purpose is required"
        if FILES_BETA not in headers.get("anthropic-beta", ""):
            return f"the Files API needs the anthropic-beta header {FILES_BETA!r}"
        extra = sorted(fields - {"file"})
        return f"{extra}: Extra inputs are not permitted" if extra else ""

    def _id(self) -> str:
        number = next(self._numbers)
        return f"file_fake{number}" if self.flavour == "anthropic" else f"file-fake{number}"

    def _file_object(self, upload: Upload) -> dict[str, object]:
        now = datetime.now(UTC)
        if self.flavour == "anthropic":
            return {
                "id": upload.file_id,
                "type": "file",
                "filename": upload.filename,
                "mime_type": upload.media_type,
                "size_bytes": len(upload.data),
                "created_at": now.isoformat().replace("+00:00", "Z"),
                "downloadable": False,
            }
        return {
            "id": upload.file_id,
            "object": "file",
            "bytes": len(upload.data),
            "created_at": int(now.timestamp()),
            "filename": upload.filename,
            "purpose": upload.purpose,
        }


class AnthropicFilesServer(AnthropicServer):
    """The fake Messages API with a Files API beside it."""

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__(api_key=api_key)
        self.files = FilesApi("anthropic", self)

    @property
    def uploads(self) -> list[Upload]:
        return self.files.uploads

    def more_routes(self) -> list[tuple[str, Handler]]:
        return [("/v1/files", self.files.upload)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = msgspec.json.decode(await request.read(), type=MessagesBody)
        except msgspec.DecodeError:
            return await super().handle(request)  # refused there, as any malformed body
        blocks = [b for m in body.messages for b in m.blocks]
        ids = [
            b.source.file_id
            for b in blocks
            if isinstance(b, ImageBlock | DocumentBlock) and isinstance(b.source, FileSource)
        ]
        refusal = _unknown(self.files, ids)
        if ids and FILES_BETA not in request.headers.get("anthropic-beta", ""):
            refusal = f"file sources need the anthropic-beta header {FILES_BETA!r}"
        if refusal:
            self.failures.append(f"request refused: {refusal}")
            return self.error(400, refusal)
        return await super().handle(request)


class ResponsesFilesServer(OpenAIResponsesServer):
    """The fake Responses API with a Files API beside it."""

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__(api_key=api_key)
        self.files = FilesApi("openai", self)

    @property
    def uploads(self) -> list[Upload]:
        return self.files.uploads

    def more_routes(self) -> list[tuple[str, Handler]]:
        return [("/v1/files", self.files.upload)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = msgspec.json.decode(await request.read(), type=ResponsesBody)
        except msgspec.DecodeError:
            return await super().handle(request)
        parts = [
            part
            for item in body.input
            if isinstance(item, Message) and not isinstance(item.content, str)
            for part in item.content
        ]
        ids = [p.file_id for p in parts if isinstance(p, InputImage | InputFile) and p.file_id]
        refusal = _unknown(self.files, ids)
        if refusal:
            self.failures.append(f"request refused: {refusal}")
            return self.error(400, refusal)
        return await super().handle(request)


def _unknown(files: FilesApi, ids: list[str]) -> str:
    unknown = [file_id for file_id in ids if not files.knows(file_id)]
    return f"no file with id {unknown[0]!r}" if unknown else ""


def anthropic_files_api(
    api_key: str | None = None,
) -> AbstractAsyncContextManager[AnthropicFilesServer]:
    """A running fake with its Files API; on a clean exit, `assert_done()`."""
    return serving(AnthropicFilesServer(api_key=api_key))


def responses_files_api(
    api_key: str | None = None,
) -> AbstractAsyncContextManager[ResponsesFilesServer]:
    """A running fake with its Files API; on a clean exit, `assert_done()`."""
    return serving(ResponsesFilesServer(api_key=api_key))
