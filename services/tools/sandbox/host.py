"""What this runner's host offers its commands, found once at start (SPEC §6.1, §6.3).

`bwrap` is tried with the real layout on a scratch workspace: it works here or the reason it does
not is kept (shown by `/sandbox`, `/status`, the system prompt and the startup log). The pids
cgroup layout is detected the same way. `stellaclaw config check` prints the same findings.
"""

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path

import msgspec

from services.tools.sandbox import bwrap, cgroups
from services.tools.sandbox.environment import BASE_PATH
from shared.config import SandboxConfig
from shared.sandbox import SandboxSupport

PROBE_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


class SandboxHost(msgspec.Struct, frozen=True, kw_only=True):
    """The sandbox facilities of this runner, shared by every call."""

    config: SandboxConfig
    runner_id: str
    support: SandboxSupport
    cgroups: cgroups.Layout
    secrets: tuple[str, ...] = ()  # resolved secret values: never passed to a command
    is_root: bool = False

    @property
    def software(self) -> Path | None:
        return Path(self.config.software_dir).expanduser() if self.config.software_dir else None


async def bubblewrap_error(config: SandboxConfig) -> str | None:
    """None when `bwrap` runs `true` in the §6.4 layout here, else why not (one line)."""
    if shutil.which(config.bwrap_path) is None:
        return f"{config.bwrap_path} is not installed (sandbox.bwrap_path)"
    with tempfile.TemporaryDirectory(prefix="stellaclaw-probe-") as scratch:
        argv = trial(config, scratch)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                _, errors = await process.communicate()
        except OSError as exc:
            return f"{config.bwrap_path} cannot start: {exc.strerror or exc}"
        except TimeoutError:
            process.kill()
            return f"{config.bwrap_path} did not finish a trial run in {PROBE_TIMEOUT_S:g} s"
    if process.returncode == 0:
        return None
    lines = errors.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"{config.bwrap_path} exited with {process.returncode}"


def trial(config: SandboxConfig, scratch: str) -> list[str]:
    """`true` in the §6.4 layout, with a scratch dir as its workspace."""
    where = Path(scratch).resolve()
    binds = bwrap.Binds(workspace=where, shared=where, cwd=where)
    return bwrap.argv(config, binds, {"PATH": BASE_PATH}, ["true"])


async def probe(config: SandboxConfig, runner_id: str, secrets: tuple[str, ...]) -> SandboxHost:
    """Try bubblewrap and the cgroups here; the runner's cgroup is made (`cgroups.remove_base`)."""
    is_root = os.geteuid() == 0
    layout = cgroups.detect(runner_id)
    error = await bubblewrap_error(config)
    process_limit = layout.describe(config.pids_limit, is_root)
    support = SandboxSupport(
        bubblewrap_error=error, network=config.network, process_limit=process_limit
    )
    return SandboxHost(
        config=config,
        runner_id=runner_id,
        support=support,
        cgroups=layout,
        secrets=secrets,
        is_root=is_root,
    )


def findings(found: SandboxHost) -> list[str]:
    """What applies here, one line each (the startup log, `stellaclaw config check`)."""
    error, mode = found.support.bubblewrap_error, found.config.mode
    if error is None:
        sandbox = f"sandbox: bubblewrap works here (default mode {mode})"
    elif mode == "auto":
        sandbox = f"sandbox: auto runs commands in subprocess mode: bubblewrap fails: {error}"
    else:
        sandbox = f"sandbox: bubblewrap cannot run here: {error} (default mode {mode})"
    return [sandbox, f"processes: {found.support.process_limit}"]


async def start(config: SandboxConfig, runner_id: str, secrets: tuple[str, ...]) -> SandboxHost:
    """Probe, log what applies (a warning for what is missing), and return the facilities."""
    found = await probe(config, runner_id, secrets)
    sandbox, processes = findings(found)
    log.log(logging.INFO if found.support.bubblewrap_error is None else logging.WARNING, sandbox)
    log.log(logging.INFO if found.cgroups.version else logging.WARNING, processes)
    return found
