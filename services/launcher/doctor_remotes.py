"""`stellaclaw doctor` for `[remotes.<name>]`: an SSH login from here with the pinned host key and
`key_file`, and `true` run there, within CHECK_S. The connection is the tools service's own
(`services/tools/remote/connections.py`), so a remote that passes here is reached the same way by a
runner with the same files; the pool's line says whether the runner's host reaches it too.
"""

import asyncio

import asyncssh

from services.launcher.doctor_findings import Finding, failed, passed
from services.tools.remote import connections
from services.tools.results import ToolError
from shared.tools_config import RemoteConfig

CHECK_S = 15.0  # the connect gives up after 10 s, `true` after 10 more


async def findings(remotes: dict[str, RemoteConfig]) -> list[Finding]:
    """One line per configured remote, checked side by side."""
    return list(await asyncio.gather(*(finding(name, table) for name, table in remotes.items())))


async def finding(name: str, remote: RemoteConfig) -> Finding:
    check, address = f"remote {name}", f"{remote.user}@{remote.host}:{remote.port}"
    try:
        async with asyncio.timeout(CHECK_S):
            conn = await connections.connect(name, remote)
            try:
                status = await connections.run_brief(conn, name, "true")
            finally:
                conn.close()
                await conn.wait_closed()
    except ToolError as exc:
        found = str(exc).removeprefix(f"cannot reach remote {name}: ")
        return failed(check, found, fix(name, remote, exc.__cause__))
    except TimeoutError:
        return failed(check, f"no answer within {CHECK_S:g} s", fix(name, remote, None))
    if status != 0:
        found = f"{address} logged in, but `true` exited with {status}"
        return failed(check, found, f"check the shell of {remote.user!r} there")
    return passed(check, f"{address} logged in with key_file; host key as pinned")


def fix(name: str, remote: RemoteConfig, cause: BaseException | None) -> str:
    """What to do, by what went wrong."""
    match cause:
        case asyncssh.HostKeyNotVerifiable():
            keyscan = f"ssh-keyscan -p {remote.port} {remote.host}"
            return f"if the host key changed on purpose, pin the new one (`{keyscan}`) as host_key"
        case asyncssh.PermissionDenied():
            return f"add key_file's public key to ~{remote.user}/.ssh/authorized_keys there"
        case _:
            return f"check remotes.{name} (host, port, key_file, host_key) and that sshd runs there"
