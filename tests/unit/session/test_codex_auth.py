"""Codex subscription tokens: read from the auth file, refreshed against the fake OAuth endpoint,
one refresh at a time per file (an asyncio lock in a process, an flock across processes)."""

import asyncio
import fcntl
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from services.session.providers.codex_auth import (
    CodexAuth,
    Credentials,
    claims,
    expires_soon,
)
from services.session.providers.protocol import AuthError
from tests.kit.codex_api import ACCOUNT_ID, codex_api
from tests.kit.codex_wire import RefreshBody, jwt
from tests.kit.waiting import eventually

WHOLE: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])


@pytest.fixture
async def codex():
    async with codex_api() as fake:
        yield fake


def tokens_in(path: Path) -> dict[str, object]:
    tokens = WHOLE.decode(path.read_bytes())["tokens"]
    assert isinstance(tokens, dict)
    return tokens


def is_waiting_for(lock: Path) -> bool:
    """Does some process or thread wait for the flock of `lock`? (Linux's /proc/locks.)"""
    inode = f":{lock.stat().st_ino} "
    lines = Path("/proc/locks").read_text().splitlines()
    return any("-> FLOCK" in line and inode in line for line in lines)


def test_a_jwt_exp_is_read_without_verifying_and_other_tokens_never_expire():
    now = time.time()
    soon, later = jwt({"exp": now + 30}), jwt({"exp": now + 3600})

    assert claims(later).exp == pytest.approx(now + 3600)
    assert expires_soon(soon, now)
    assert not expires_soon(later, now)
    assert not expires_soon("sk-not-a-jwt", now)
    assert not expires_soon("a.@@@.c", now)


async def test_fresh_tokens_are_used_as_they_are(codex, http, tmp_path):
    path = codex.write_auth_file(tmp_path / "auth.json")

    found = await CodexAuth(codex.token_url).credentials(http, str(path))

    assert found == Credentials(access_token=codex.access_token, account_id=ACCOUNT_ID)
    assert codex.refreshes == []


async def test_the_account_id_comes_from_the_id_token_when_the_file_has_none(codex, http, tmp_path):
    path = codex.write_auth_file(tmp_path / "auth.json", has_account_id=False)

    found = await CodexAuth(codex.token_url).credentials(http, str(path))

    assert found.account_id == ACCOUNT_ID
    assert "account_id" not in tokens_in(path)


async def test_a_token_expiring_within_a_minute_is_refreshed_and_written_back(
    codex, http, tmp_path
):
    path = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=30)
    old = tokens_in(path)
    before = time.time()

    found = await CodexAuth(codex.token_url).credentials(http, str(path))

    assert codex.refreshes == [
        RefreshBody(
            client_id="app_EMoamEEZ73f0CkXaXp7hrann",
            grant_type="refresh_token",
            refresh_token=str(old["refresh_token"]),
            scope="openid profile email",
        )
    ]
    assert found.access_token == codex.access_token != old["access_token"]
    new = tokens_in(path)
    assert new == {
        "id_token": codex.id_token,
        "access_token": codex.access_token,
        "refresh_token": codex.refresh_token,
        "account_id": ACCOUNT_ID,
    }
    whole = WHOLE.decode(path.read_bytes())
    assert whole["OPENAI_API_KEY"] is None  # the file's other keys stay
    refreshed_at = str(whole["last_refresh"])
    assert refreshed_at.endswith("Z")
    assert datetime.fromisoformat(refreshed_at) >= datetime.fromtimestamp(before - 1, UTC)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auth.json", "auth.json.lock"]


async def test_a_refused_refresh_is_an_auth_error_naming_the_fix(codex, http, tmp_path):
    path = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=5)
    codex.refresh_token = None  # revoked upstream, e.g. by a login elsewhere

    with pytest.raises(AuthError) as caught:
        await CodexAuth(codex.token_url).credentials(http, str(path))

    assert caught.value.reason.startswith(
        "the codex refresh token was refused (HTTP 400 invalid_grant): "
        "run `codex login` on this host ('/"
    )
    assert (caught.value.status, caught.value.is_transient) == (400, False)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not found: run `codex login` on this host"),
        (b"{not json", "is malformed: run `codex login` on this host (JSON is malformed"),
        (b'{"OPENAI_API_KEY": "sk-x"}', "is malformed: run `codex login` on this host (Object"),
        (b'{"tokens": {"access_token": 1}}', "is malformed: run `codex login` on this host (Exp"),
    ],
)
async def test_a_missing_or_malformed_auth_file_is_an_auth_error(http, tmp_path, content, problem):
    path = tmp_path / "auth.json"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(AuthError) as caught:
        await CodexAuth("http://127.0.0.1:9/never").credentials(http, str(path))

    assert caught.value.reason.startswith(f"codex auth file {str(path)!r} {problem}")
    assert not caught.value.is_transient


async def test_an_auth_file_without_any_account_id_is_an_auth_error(http, tmp_path):
    tokens = {"access_token": jwt({"exp": time.time() + 3600}), "refresh_token": "rt"}
    path = tmp_path / "auth.json"
    path.write_bytes(msgspec.json.encode({"tokens": tokens}))

    with pytest.raises(AuthError, match=r"no ChatGPT account id in .*: run `codex login`"):
        await CodexAuth("http://127.0.0.1:9/never").credentials(http, str(path))


async def test_concurrent_calls_in_one_process_refresh_once(codex, http, tmp_path):
    path = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=10)
    gate = codex.hold_refreshes()
    auth = CodexAuth(codex.token_url)

    first = asyncio.create_task(auth.credentials(http, str(path)))
    async with asyncio.timeout(5):
        await codex.refresh_arrived.wait()
    second = asyncio.create_task(auth.credentials(http, str(path)))
    gate.set()
    found = await asyncio.gather(first, second)

    assert len(codex.refreshes) == 1
    assert found[0] == found[1]
    assert found[0].access_token == codex.access_token


def refresh_elsewhere(path: Path, token_url: str) -> Credentials:
    """A refresh as another process makes it: its own event loop, client and CodexAuth."""

    async def refresh() -> Credentials:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
            return await CodexAuth(token_url).credentials(http, str(path))

    return asyncio.run(refresh())


async def test_two_refreshers_sharing_the_file_refresh_once_under_the_flock(codex, tmp_path):
    path = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=10)
    gate = codex.hold_refreshes()

    first = asyncio.create_task(asyncio.to_thread(refresh_elsewhere, path, codex.token_url))
    async with asyncio.timeout(5):
        await codex.refresh_arrived.wait()  # the first holds the flock now
    second = asyncio.create_task(asyncio.to_thread(refresh_elsewhere, path, codex.token_url))
    await eventually(lambda: is_waiting_for(tmp_path / "auth.json.lock"), what="a flock waiter")
    gate.set()
    found = await asyncio.gather(first, second)

    assert len(codex.refreshes) == 1  # the second read the first's tokens under the lock
    assert found[0] == found[1]
    assert found[0].access_token == codex.access_token == tokens_in(path)["access_token"]


async def test_a_refresh_made_by_another_process_meanwhile_is_taken_as_it_is(codex, http, tmp_path):
    path = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=10)
    lock = tmp_path / "auth.json.lock"
    held = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)  # the other process, mid-refresh
    try:
        waiting = asyncio.create_task(CodexAuth(codex.token_url).credentials(http, str(path)))
        await eventually(lambda: is_waiting_for(lock), what="a flock waiter")
        codex.write_auth_file(path)  # what the other process wrote
    finally:
        os.close(held)

    found = await waiting

    assert found.access_token == codex.access_token
    assert codex.refreshes == []


async def test_a_call_cancelled_while_waiting_for_the_flock_lets_it_go(codex, http, tmp_path):
    path = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=10)
    lock = tmp_path / "auth.json.lock"
    held = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    auth = CodexAuth(codex.token_url)
    try:
        waiting = asyncio.create_task(auth.credentials(http, str(path)))
        await eventually(lambda: is_waiting_for(lock), what="a flock waiter")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        os.close(held)

    found = await asyncio.wait_for(auth.credentials(http, str(path)), timeout=5)

    assert found.access_token == codex.access_token
    assert len(codex.refreshes) == 1


async def test_a_call_cancelled_during_a_refresh_still_keeps_the_new_tokens(codex, http, tmp_path):
    """The refresh token is single-use: once the endpoint has it, its answer must be written."""
    path = codex.write_auth_file(tmp_path / "auth.json", expires_in_s=10)
    spent = tokens_in(path)["refresh_token"]
    gate = codex.hold_refreshes()
    auth = CodexAuth(codex.token_url)
    call = asyncio.create_task(auth.credentials(http, str(path)))
    async with asyncio.timeout(5):
        await codex.refresh_arrived.wait()  # the endpoint took the token

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    gate.set()

    await eventually(lambda: tokens_in(path)["refresh_token"] != spent, what="new tokens")
    assert tokens_in(path)["refresh_token"] == codex.refresh_token
    found = await auth.credentials(http, str(path))  # no second refresh with the spent token
    assert found.access_token == codex.access_token
    assert len(codex.refreshes) == 1
