"""SPEC §6.2: the environment a command sees; no secret is ever inherited.

`subprocess` and `bubblewrap` clear it and set only the listed variables (plus `sandbox.env`);
`disabled` inherits the service's own, minus every secret value this process resolved.
"""

from pathlib import Path

from shared import config as config_file
from shared.config import SandboxConfig

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
HOME_DIR = ".stellaclaw/home"


def cleared(
    config: SandboxConfig, workspace: Path, conversation_id: str, software: str | None
) -> dict[str, str]:
    """§6.2 without a tty; `software` is where the software dir is seen (mount or host path)."""
    env = {
        "PATH": f"{software}/bin:{BASE_PATH}" if software else BASE_PATH,
        "HOME": str(workspace / HOME_DIR),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",
        "STELLACLAW_WORKSPACE": str(workspace),
        "STELLACLAW_CONVERSATION": conversation_id,
    }
    if software:
        env["STELLACLAW_SOFTWARE_DIR"] = software
    return env | config.env


def inherited(secrets: tuple[str, ...]) -> dict[str, str]:
    """`disabled` mode: this service's environment without a variable holding a secret."""
    return {
        name: value
        for name, value in config_file.environment().items()
        if not any(secret and secret in value for secret in secrets)
    }
