"""The ChatGPT subscription's tokens for `provider = "codex"` (SPEC §7.2).

`codex login` writes them to `auth_file` (`tokens.access_token`, `refresh_token`, `id_token`,
`account_id`). The access token is refreshed when its `exp` is within 60 s, or when the API
refused it. Refresh tokens are single-use, so a refresh is exclusive per file: an asyncio lock
within this process and an flock on `<auth_file>.lock` across processes on this host. Under both
locks the file is read again first: when another process has refreshed meanwhile, its tokens are
used as they are. The new tokens and `last_refresh` replace the file atomically (mode 0600).
File I/O and locking run off the event loop. Tokens are never logged.
"""

import asyncio
import base64
import fcntl
import logging
import os
import tempfile
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import msgspec

from services.session.providers.http_stream import retry_after_header
from services.session.providers.protocol import AuthError, ProviderError, classified

TOKEN_URL = "https://auth.openai.com/oauth/token"
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SCOPE = "openid profile email"
REFRESH_MARGIN_S = 60.0  # an access token this close to its `exp` is refreshed first
REFRESH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
FILE_MODE = 0o600
LOGIN = "run `codex login` on this host"
log = logging.getLogger(__name__)


class FileTokens(msgspec.Struct, frozen=True, kw_only=True):
    """The auth file's `tokens` table (other keys of the file are kept as they are)."""

    access_token: str
    refresh_token: str
    id_token: str = ""
    account_id: str | None = None


class AuthFile(msgspec.Struct, frozen=True, kw_only=True):
    tokens: FileTokens


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """What a call needs: the bearer token and the ChatGPT account it belongs to."""

    access_token: str
    account_id: str


class AuthClaims(msgspec.Struct, frozen=True, kw_only=True):
    chatgpt_account_id: str | None = None


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    """The JWT claims read here (the signature is the API's business, not ours)."""

    exp: float | None = None
    auth: AuthClaims | None = msgspec.field(default=None, name="https://api.openai.com/auth")


class Refreshed(msgspec.Struct, frozen=True, kw_only=True):
    """The token endpoint's answer; a token it leaves out stays as it was."""

    access_token: str | None = None
    refresh_token: str | None = None
    id_token: str | None = None


class OAuthDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: str | None = None
    message: str | None = None


class OAuthError(msgspec.Struct, frozen=True, kw_only=True):
    """`{"error": "invalid_grant", "error_description"}`, or OpenAI's nested `error` object."""

    error: str | OAuthDetail | None = None
    error_description: str | None = None


AUTH_FILE: msgspec.json.Decoder[AuthFile] = msgspec.json.Decoder(AuthFile)
WHOLE_FILE: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])
CLAIMS: msgspec.json.Decoder[Claims] = msgspec.json.Decoder(Claims)
REFRESHED: msgspec.json.Decoder[Refreshed] = msgspec.json.Decoder(Refreshed)
OAUTH_ERROR: msgspec.json.Decoder[OAuthError] = msgspec.json.Decoder(OAuthError)
ENCODER = msgspec.json.Encoder()


def auth_error(reason: str, status: int | None = None) -> AuthError:
    """Credentials that cannot work until the operator acts: no retry cures them."""
    return AuthError(reason, status=status, is_transient=False)


# --- tokens and claims --------------------------------------------------------------------------


def claims(token: str) -> Claims:
    """A JWT's payload, decoded without verifying; empty claims for anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        return Claims()
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        return CLAIMS.decode(base64.urlsafe_b64decode(payload))
    except (ValueError, msgspec.DecodeError):  # binascii.Error is a ValueError
        return Claims()


def expires_soon(token: str, now_s: float | None = None) -> bool:
    """Is the token's `exp` within REFRESH_MARGIN_S? A token without one never expires here."""
    exp = claims(token).exp
    now_s = time.time() if now_s is None else now_s
    return exp is not None and exp - now_s < REFRESH_MARGIN_S


def credentials_of(tokens: FileTokens, path: str) -> Credentials:
    """The access token and the account id: the file's, else the id (or access) token's claim."""
    account_id = tokens.account_id
    for token in (tokens.id_token, tokens.access_token):
        found = claims(token).auth
        account_id = account_id or (found.chatgpt_account_id if found else None)
    if not account_id:
        raise auth_error(f"no ChatGPT account id in {path!r}: {LOGIN}")
    return Credentials(access_token=tokens.access_token, account_id=account_id)


# --- the file (these run in a worker thread) ----------------------------------------------------


def read_tokens(path: str) -> FileTokens:
    try:
        return AUTH_FILE.decode(_read(path)).tokens
    except msgspec.DecodeError as exc:
        raise _malformed(path, exc) from None


def _malformed(path: str, error: msgspec.DecodeError) -> AuthError:
    return auth_error(f"codex auth file {path!r} is malformed: {LOGIN} ({error})")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise auth_error(f"codex auth file {path!r} not found: {LOGIN}") from None
    except OSError as exc:
        raise auth_error(f"codex auth file {path!r} is unreadable ({exc.strerror})") from None


def write_tokens(path: str, fresh: Refreshed) -> FileTokens:
    """Put the new tokens and `last_refresh` into the file, keeping its other keys."""
    try:
        whole = WHOLE_FILE.decode(_read(path))
        tokens = msgspec.to_builtins(msgspec.convert(whole.get("tokens"), FileTokens))
    except msgspec.DecodeError as exc:
        raise _malformed(path, exc) from None
    tokens |= {key: value for key, value in msgspec.to_builtins(fresh).items() if value}
    whole["tokens"] = tokens
    whole["last_refresh"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    _replace(path, msgspec.json.format(ENCODER.encode(whole), indent=2) + b"\n")
    return msgspec.convert(tokens, FileTokens)


def _replace(path: str, content: bytes) -> None:
    """Write a temporary file next to `path`, then rename it over `path`: never half a file."""
    folder, name = os.path.split(path)
    handle, temporary = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), FILE_MODE)
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _lock_exclusively(lock_path: str) -> int:
    """Open the lock file and wait for its flock; closing the descriptor releases it."""
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise auth_error(f"cannot create the lock file {lock_path!r} ({exc.strerror})") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


@asynccontextmanager
async def flocked(lock_path: str) -> AsyncIterator[None]:
    """The lock file's exclusive flock, waited for in a worker thread."""
    taking = asyncio.ensure_future(asyncio.to_thread(_lock_exclusively, lock_path))
    try:
        descriptor = await asyncio.shield(taking)
    except asyncio.CancelledError:  # the thread still takes the lock: let it go once taken
        taking.add_done_callback(_release_when_taken)
        raise
    try:
        yield
    finally:
        os.close(descriptor)


def _release_when_taken(taking: "asyncio.Future[int]") -> None:
    if not taking.cancelled() and taking.exception() is None:
        os.close(taking.result())


# --- refreshing ---------------------------------------------------------------------------------


class CodexAuth:
    """Credentials from auth files, refreshed one at a time per file.

    `token_url` is the OAuth endpoint (tests point it at their fake). The asyncio locks are kept
    per event loop, since an asyncio.Lock belongs to the loop that first waited on it.
    """

    def __init__(self, token_url: str | None = None) -> None:
        self._token_url = token_url  # None: TOKEN_URL, looked up at each refresh
        self._renewals: set[asyncio.Task[FileTokens]] = set()
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    async def credentials(self, http: httpx.AsyncClient, auth_file: str) -> Credentials:
        """The file's credentials, refreshed first when the access token expires soon."""
        path = await asyncio.to_thread(os.path.expanduser, auth_file)  # `~` may read passwd
        tokens = await asyncio.to_thread(read_tokens, path)
        if expires_soon(tokens.access_token):
            return await self.refresh(http, auth_file, stale=tokens.access_token)
        return credentials_of(tokens, path)

    async def refresh(self, http: httpx.AsyncClient, auth_file: str, *, stale: str) -> Credentials:
        """New credentials in place of `stale` (refused, or about to expire)."""
        path = await asyncio.to_thread(os.path.expanduser, auth_file)
        async with self._lock(path), flocked(path + ".lock"):
            tokens = await asyncio.to_thread(read_tokens, path)
            if tokens.access_token != stale and not expires_soon(tokens.access_token):
                return credentials_of(tokens, path)  # refreshed meanwhile, here or elsewhere
            tokens = await self._renewed(http, path, tokens.refresh_token)
        log.info("codex tokens refreshed", extra={"auth_file": path})
        return credentials_of(tokens, path)

    async def _renewed(self, http: httpx.AsyncClient, path: str, refresh_token: str) -> FileTokens:
        """Exchange the single-use refresh token and write what comes back, shielded: a call
        cancelled in between would otherwise spend the token and lose the login. The renewal
        ends within the token request's timeout either way."""

        async def renew() -> FileTokens:
            fresh = await self._exchange(http, path, refresh_token)
            return await asyncio.to_thread(write_tokens, path, fresh)

        task = asyncio.create_task(renew(), name=f"codex token renewal {path}")
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)
        return await asyncio.shield(task)

    def _lock(self, path: str) -> asyncio.Lock:
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(path, asyncio.Lock())

    async def _exchange(self, http: httpx.AsyncClient, path: str, refresh_token: str) -> Refreshed:
        """The refresh token for new tokens at the OAuth endpoint."""
        body = {"client_id": CLIENT_ID, "grant_type": "refresh_token"}
        body |= {"refresh_token": refresh_token, "scope": SCOPE}
        token_url = self._token_url or TOKEN_URL
        host = httpx.URL(token_url).host
        try:
            response = await http.post(
                token_url,
                content=ENCODER.encode(body),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=REFRESH_TIMEOUT,
            )
        except httpx.TransportError as exc:
            raise ProviderError(f"refreshing the codex token at {host} failed: {exc!r}") from None
        if not response.is_success:
            raise _refused(response, host, path)
        try:
            fresh = REFRESHED.decode(response.content)
        except msgspec.DecodeError as exc:
            raise ProviderError(f"malformed token answer from {host}: {exc}") from None
        if not fresh.access_token:
            raise ProviderError(f"the token answer from {host} carried no access token")
        return fresh


def _refused(response: httpx.Response, host: str, path: str) -> ProviderError:
    status = response.status_code
    code = _error_code(response.content)
    if status in (400, 401, 403):  # the refresh token is spent, revoked or expired
        reason = f"the codex refresh token was refused (HTTP {status} {code}): {LOGIN} ({path!r})"
        return auth_error(reason, status)
    retry_after_s = retry_after_header(response.headers.get("retry-after"))
    return classified(
        f"HTTP {status} from {host} refreshing the codex token", status, code, retry_after_s
    )


def _error_code(raw: bytes) -> str:
    try:
        error = OAUTH_ERROR.decode(raw).error
    except msgspec.DecodeError:
        return "no error code"
    match error:
        case str():
            return error
        case OAuthDetail(code=str(code)):
            return code
    return "no error code"
