"""`stellaclaw doctor` run for real against a running `stellaclaw up` and the kit's fakes."""

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from tests.kit import stack as sc_stack

pytestmark = pytest.mark.e2e
USER = 7001


async def doctor(config: Path, workdir: Path) -> tuple[int | None, list[str], str]:
    """`stellaclaw doctor` to its end: the exit code, its lines and its stderr."""
    process = await asyncio.create_subprocess_exec(
        sc_stack.stellaclaw(),
        *("doctor", "--config", str(config), "--workdir", str(workdir)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode().splitlines(), err.decode()


def line_of(lines: list[str], check: str) -> str:
    [found] = [line for line in lines if line[2:].startswith(f"{check}: ")]
    return found


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(120)
async def test_doctor_passes_a_running_stack_and_fails_a_stopped_service_or_a_dead_model(
    tmp_path, monkeypatch
):
    async with sc_stack.fakes(tmp_path, monkeypatch.setenv, [USER]) as world:
        world.llm.models = ["gpt-e2e"]
        async with sc_stack.stack(world.config, world.workdir) as running:
            await running.wait_ready(sc_stack.SERVICES)
            code, lines, err = await doctor(world.config, world.workdir)
            assert (code, err) == (0, ""), lines
            assert [line for line in lines[:-1] if line[0] != "✓"] == []
            assert lines[-1] == "all checks passed"
            assert line_of(lines, "bus").endswith("logged in as observer, JetStream on")
            assert line_of(lines, "service ingress_telegram").startswith("✓ service ingress_")
            assert line_of(lines, "model main") == (
                f"✓ model main: {world.llm.base_url} accepted the key and serves 'gpt-e2e'"
            )
            assert line_of(lines, "telegram") == (
                "✓ telegram: the token belongs to @stellaclaw_test_bot (bot 123456789)"
            )
            output = "\n".join(lines)
            assert sc_stack.KEY not in output
            assert world.telegram.token not in output

            delivery = running.pid("delivery")
            os.kill(delivery, signal.SIGSTOP)  # alive, but answering nothing
            try:
                code, lines, _ = await doctor(world.config, world.workdir)
            finally:
                os.kill(delivery, signal.SIGCONT)
            assert code == 1
            assert line_of(lines, "service delivery").startswith(
                "✗ service delivery: no instance answers $SRV.PING — start it (`stellaclaw up`, "
                "or `stellaclaw run delivery`)"
            )
            assert [line[2:].split(":")[0] for line in lines if line[0] == "✗"] == [
                "service delivery"
            ]
            assert lines[-1] == f"1 of {len(lines) - 1} checks failed"

            gone = tmp_path / "gone.toml"
            gone.write_text(
                world.config.read_text(encoding="utf-8")
                + f'\n[models.gone]\nprovider = "openai_chat"\nmodel = "gpt-e2e"\n'
                f'base_url = "http://127.0.0.1:{closed_port()}/v1"\n',
                encoding="utf-8",
            )
            code, lines, _ = await doctor(gone, world.workdir)
            assert code == 1
            assert line_of(lines, "model gone").startswith("✗ model gone: cannot reach http://")
            assert line_of(lines, "model gone").endswith(
                "— check models.gone.base_url and the network"
            )
            assert line_of(lines, "model main").startswith("✓ model main:")


async def test_doctor_exits_2_on_a_config_it_cannot_read(tmp_path):
    code, lines, err = await doctor(tmp_path / "missing.toml", tmp_path / "workdir")
    assert (code, lines) == (2, [])
    assert (
        err
        == f"config: cannot read {str(tmp_path / 'missing.toml')!r}: No such file or directory\n"
    )
