"""Every check of `stellaclaw doctor`, run side by side, its findings in a fixed order: the config,
the bus (layout, services, pools), the models, the remotes, Telegram."""

import asyncio
from pathlib import Path

from services.launcher import doctor_bus, doctor_http, doctor_remotes
from services.launcher.doctor_findings import Finding, passed
from shared.config import Config


async def examine(config: Config, config_path: Path, workdir: Path) -> list[Finding]:
    """What `doctor` prints, one finding per line."""
    on_bus, models, remotes, telegram = await asyncio.gather(
        doctor_bus.findings(config, workdir),
        doctor_http.model_findings(config.models),
        doctor_remotes.findings(config.remotes),
        doctor_http.telegram_findings(config.telegram),
    )
    return [config_finding(config, config_path), *on_bus, *models, *remotes, *telegram]


def config_finding(config: Config, config_path: Path) -> Finding:
    """The config was read, every `${VAR}` resolved (or `load` raised and doctor exits 2)."""
    parts = [_count(len(config.models), "model"), _count(len(config.remotes), "remote")]
    parts.append("Telegram on" if config.telegram else "no Telegram")
    return passed("config", f"{config_path} read, every variable set; {', '.join(parts)}")


def _count(count: int, thing: str) -> str:
    return f"{count or 'no'} {thing}" if count == 1 else f"{count or 'no'} {thing}s"
