"""A fake ChatGPT Codex backend: the Responses websocket and the OAuth token endpoint, strict,
scripted and tapped.

    async with codex_api() as codex:  # a clean exit runs assert_done()
        auth_file = codex.write_auth_file(tmp_path / "auth.json")  # as `codex login` writes it
        codex.script(tool_call("shell", {"command": "ls"}), reply("Done."))
        # a model with base_url=codex.base_url, auth_file=auth_file; CodexAuth(codex.token_url)

`GET /backend-api/codex/responses` upgrades to a websocket when the bearer token is the current
one (else 401) and the other headers are Codex's (else 400, recorded in `failures`). The first
text frame must be a `response.create` the backend takes (`codex_wire.CreateFrame`); it consumes
the next step, tapped in `requests`, and the Responses events follow, one per text frame. A
refused frame, a frame past the script or a forged reasoning item gets an `error` event and is
recorded. `POST /oauth/token` refreshes: the body must be the Codex CLI's, and each refresh token
works once (a second use is a 400 `invalid_grant` and a recorded failure).
"""

import asyncio
import itertools
import os
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Literal

import msgspec
from aiohttp import WSMsgType, web

from tests.kit.codex_wire import (
    ACCOUNT_CLAIM,
    CREATE_FRAME,
    RAW_FRAME,
    REFRESH_BODY,
    CodexRequest,
    Events,
    ReasoningInput,
    RefreshBody,
    jwt,
    wrapped_error,
)
from tests.kit.openai_responses_api import Arguments, ScriptedCall, TokenCounts
from tests.kit.scripted_http import ScriptedServer, serve, serving

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
BETA = "responses_websockets=2026-02-06"
ACCOUNT_ID = "acct_fake_7f3a"
FRAME_WAIT_S = 5.0
_ENCODER = msgspec.json.Encoder()

# --- the script ---------------------------------------------------------------------------------


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """A completed response: reasoning summaries, a message, then function calls."""

    text: str = ""
    calls: list[ScriptedCall] = []
    reasoning: list[str] = []  # one reasoning item (with encrypted content) per summary
    usage: TokenCounts | None = None  # None: estimated from the sizes of frame and answer


class Dropped(msgspec.Struct, frozen=True, kw_only=True):
    """The socket dies without a close frame: before any event, or after some of the text."""

    when: Literal["before_first_event", "mid_answer"]
    text: str = "half an ans"


class StreamError(msgspec.Struct, frozen=True, kw_only=True):
    """An `error` event (with the HTTP status the request would have had) instead of an answer."""

    status: int | None
    message: str
    code: str | None = None


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """The upgrade answered with an HTTP error instead of 101."""

    status: int
    message: str
    retry_after_s: float | None = None


Step = Answer | Dropped | StreamError | Refused


def reply(
    text: str, *, reasoning: list[str] | None = None, usage: TokenCounts | None = None
) -> Answer:
    return Answer(text=text, reasoning=reasoning or [], usage=usage)


def tool_call(name: str, arguments: Arguments, *, call_id: str | None = None) -> Answer:
    text = arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode()
    return Answer(calls=[ScriptedCall(name=name, arguments=text, call_id=call_id)])


def tool_calls(*calls: Answer, text: str = "", reasoning: list[str] | None = None) -> Answer:
    """Several calls (each from `tool_call`) in one response, after reasoning and a preamble."""
    found = [call for step in calls for call in step.calls]
    return Answer(calls=found, text=text, reasoning=reasoning or [])


class Upgrade(msgspec.Struct, frozen=True, kw_only=True):
    """One websocket handshake: its headers (lower-cased) and the status answered."""

    headers: dict[str, str]
    status: int


# --- the server ---------------------------------------------------------------------------------


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, dumps=lambda v: _ENCODER.encode(v).decode())


class CodexServer(ScriptedServer[Step]):
    """The Codex backend and the OpenAI token endpoint on 127.0.0.1, answered from a script."""

    title = "fake Codex backend"

    def __init__(self, *, account_id: str = ACCOUNT_ID) -> None:
        super().__init__()
        self.account_id = account_id
        self.requests: list[CodexRequest] = []
        self.upgrades: list[Upgrade] = []
        self.refreshes: list[RefreshBody] = []
        self.refresh_arrived = asyncio.Event()
        self.access_token: str | None = None  # the one the backend takes now
        self.refresh_token: str | None = None  # the one the token endpoint takes now
        self.id_token = ""
        self._spent: set[str] = set()
        self._sealed: set[str] = set()  # encrypted reasoning the backend made
        self._gate: asyncio.Event | None = None
        self._numbers = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/backend-api/codex"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/oauth/token"

    def mint(self, expires_in_s: float = 3600.0) -> None:
        """New current tokens, as a login or a refresh makes them."""
        number, exp = next(self._numbers), int(time.time() + expires_in_s)
        auth = {"chatgpt_account_id": self.account_id, "chatgpt_plan_type": "plus"}
        self.access_token = jwt({"exp": exp, "jti": f"at_{number}", ACCOUNT_CLAIM: auth})
        self.id_token = jwt({"exp": exp, "email": "ada@example.com", ACCOUNT_CLAIM: auth})
        self.refresh_token = f"rt_{number}"

    def write_auth_file(
        self, path: Path, *, expires_in_s: float = 3600.0, has_account_id: bool = True
    ) -> Path:
        """`codex login`'s file with new current tokens; the access token expires as asked."""
        self.mint(expires_in_s)
        tokens = {"id_token": self.id_token, "access_token": self.access_token}
        tokens |= {"refresh_token": self.refresh_token}
        if has_account_id:
            tokens["account_id"] = self.account_id
        whole = {"OPENAI_API_KEY": None, "tokens": tokens, "last_refresh": "2026-01-01T00:00:00Z"}
        path.write_bytes(msgspec.json.format(_ENCODER.encode(whole), indent=2))
        os.chmod(path, 0o600)
        return path

    def expire_access_token(self) -> None:
        """The backend stops taking the current access token (its `exp` notwithstanding)."""
        self.access_token = None

    def hold_refreshes(self) -> asyncio.Event:
        """Refreshes wait, once `refresh_arrived`, until the returned Event is set."""
        self._gate = asyncio.Event()
        return self._gate

    def error(self, status: int, message: str) -> web.StreamResponse:
        return _error(status, message)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/backend-api/codex/responses", self._responses)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._unexpected)
        self._runner, self._port = await serve(app)

    # --- the websocket ---------------------------------------------------------------------

    def _refusal(self, headers: dict[str, str]) -> web.Response | None:
        if not self.access_token or headers.get("authorization") != f"Bearer {self.access_token}":
            return _error(401, "Your authentication token has expired.", "token_expired")
        wrong = [
            f"{name}: {headers.get(name)!r}"
            for name, expected in (
                ("chatgpt-account-id", self.account_id),
                ("openai-beta", BETA),
                ("originator", "codex_cli_rs"),
            )
            if headers.get(name) != expected
        ]
        wrong += [
            f"{name} missing"
            for name in ("session_id", "x-client-request-id")
            if not headers.get(name)
        ]
        if wrong:
            self.failures.append(f"upgrade refused: {', '.join(wrong)}")
            return _error(400, f"bad upgrade headers: {', '.join(wrong)}")
        return None

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        refusal = self._refusal(headers)
        if refusal is None and self._steps and isinstance(self._steps[0], Refused):
            step = self._steps.pop(0)
            assert isinstance(step, Refused)
            retry = {"Retry-After": f"{step.retry_after_s:g}"} if step.retry_after_s else {}
            refusal = _error(step.status, step.message)
            refusal.headers.update(retry)
        if refusal is not None:
            self.upgrades.append(Upgrade(headers=headers, status=refusal.status))
            return refusal
        self.upgrades.append(Upgrade(headers=headers, status=101))
        socket = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await socket.prepare(request)
        frame = await self._frame(socket, headers)
        if frame is not None:
            await self._answer(request, socket, frame)
        return socket

    async def _frame(
        self, socket: web.WebSocketResponse, headers: dict[str, str]
    ) -> CodexRequest | None:
        """The `response.create` frame, tapped; None (answered, recorded) for a refused one."""
        try:
            message = await socket.receive(timeout=FRAME_WAIT_S)
        except TimeoutError:
            self.failures.append("no frame came after the upgrade")
            return None
        if message.type != WSMsgType.TEXT:
            self.failures.append(f"the first frame was {message.type.name}, not text")
            return None
        try:
            typed = CREATE_FRAME.decode(message.data)
        except msgspec.DecodeError as exc:
            await self._reject(socket, f"refused frame: {exc}")
            return None
        sealed = [
            item.encrypted_content for item in typed.input if isinstance(item, ReasoningInput)
        ]
        forged = [content for content in sealed if content not in self._sealed]
        if forged:
            await self._reject(socket, f"reasoning not made here: {forged!r}")
            return None
        tapped = CodexRequest(headers=headers, frame=RAW_FRAME.decode(message.data), typed=typed)
        self.requests.append(tapped)
        return tapped

    async def _reject(self, socket: web.WebSocketResponse, problem: str) -> None:
        self.failures.append(problem)  # our client sent it: a bug
        await socket.send_str(wrapped_error(400, None, problem))
        await socket.close()

    async def _answer(
        self, request: web.Request, socket: web.WebSocketResponse, tapped: CodexRequest
    ) -> None:
        step = self.next_step(len(self.requests))
        if step is None or isinstance(step, Refused):
            if isinstance(step, Refused):
                self.failures.append(f"{step!r} came after an upgrade")
            await socket.send_str(wrapped_error(500, None, "the fake's script has no step left"))
            await socket.close()
            return
        if isinstance(step, StreamError):
            await socket.send_str(wrapped_error(step.status, step.code, step.message))
            await socket.close()
            return
        frames = self._events(step, tapped)
        if isinstance(step, Dropped):
            frames = [] if step.when == "before_first_event" else frames
            for frame in frames:
                await socket.send_str(frame)
            assert request.transport is not None
            request.transport.close()  # no close frame: the socket just dies
            return
        for frame in frames:
            await socket.send_str(frame)
        async for message in socket:  # until the client closes
            self.failures.append(f"unexpected {message.type.name} frame after the response")

    def _events(self, step: Answer | Dropped, tapped: CodexRequest) -> list[str]:
        response: dict[str, object] = {"id": f"resp_{next(self._numbers)}", "object": "response"}
        response |= {
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": tapped.typed.model,
        }
        response |= {"output": [], "usage": None, "store": False}
        response["service_tier"] = tapped.typed.service_tier or "default"
        events = Events(response, self._numbers)
        events.start()
        if isinstance(step, Dropped):
            events.message(step.text, is_cut=True)
            return events.frames
        self._sealed |= {events.reasoning(summary) for summary in step.reasoning}
        if step.text:
            events.message(step.text)
        for call in step.calls:
            events.call(call)
        output_chars = len(step.text) + sum(len(call.arguments) for call in step.calls)
        size = len(_ENCODER.encode(tapped.frame))
        events.complete(
            step.usage
            or TokenCounts(input_tokens=max(1, size // 4), output_tokens=max(1, output_chars // 4))
        )
        return events.frames

    # --- the token endpoint ----------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            self.failures.append(f"refresh sent as {request.content_type!r}")
            return _error(400, "expected a JSON body", "invalid_request")
        try:
            body = REFRESH_BODY.decode(await request.read())
        except msgspec.DecodeError as exc:
            self.failures.append(f"refused refresh body: {exc}")
            return _error(400, str(exc), "invalid_request")
        self.refreshes.append(body)
        self.refresh_arrived.set()
        if self._gate is not None:
            await self._gate.wait()
        expected = (CLIENT_ID, "refresh_token", "openid profile email")
        if (body.client_id, body.grant_type, body.scope) != expected:
            self.failures.append(f"refresh with {body!r}")
            return _error(400, "invalid client, grant type or scope", "invalid_request")
        if body.refresh_token in self._spent:
            self.failures.append(f"refresh token {body.refresh_token!r} used twice")
            return _oauth_error("invalid_grant", "Refresh token has already been used.")
        if body.refresh_token != self.refresh_token:
            return _oauth_error("invalid_grant", "Refresh token is invalid or revoked.")
        self._spent.add(body.refresh_token)
        self.mint()
        tokens = {"id_token": self.id_token, "access_token": self.access_token}
        tokens |= {"refresh_token": self.refresh_token}
        return web.json_response(tokens)


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)


def codex_api(*, account_id: str = ACCOUNT_ID) -> AbstractAsyncContextManager[CodexServer]:
    """A running fake; on a clean exit, `assert_done()` checks the script was followed."""
    return serving(CodexServer(account_id=account_id))
