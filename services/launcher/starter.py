"""`stellaclaw init`: the commented starter config, and `config check`'s redacted view."""

from pathlib import Path
from typing import Any

STARTER = """\
# Stellaclaw configuration. Every key is described in the README; unknown keys are errors.
# Secrets are ${ENV_VAR} references, resolved when Stellaclaw starts.

# The model new conversations use (a name from the [models.*] tables below).
default_model = "main"

# Where workspaces, logs and the embedded NATS store live (`--workdir` wins).
# workdir = "~/.local/share/stellaclaw"

[models.main]
provider = "openai_chat"                   # an OpenAI-compatible chat completions API
base_url = "https://openrouter.ai/api/v1"  # or https://api.openai.com/v1, a local server, ...
api_key = "${OPENAI_API_KEY}"
model = "openai/gpt-4o-mini"
context_window = 128000
# fallback = ["spare"]                     # tried when this model keeps failing ([models.spare])

# How shell commands are isolated: "auto" is bubblewrap where `bwrap` works (apt-get install
# bubblewrap), else subprocess with a warning. Only bubblewrap confines a command.
# [sandbox]
# mode = "auto"
# network = false

# Talk to Stellaclaw on Telegram: create a bot with @BotFather, then uncomment.
# [telegram]
# bot_token = "${TELEGRAM_BOT_TOKEN}"
# allowed_user_ids = [123456789]          # your numeric Telegram user id
# admin_user_ids = [123456789]            # may weaken a chat's sandbox
# api_base = "https://api.telegram.org"

# [bus]
# url = "nats://127.0.0.1:4222"           # unset: `stellaclaw up` starts an embedded server
"""


def write_starter(path: Path) -> None:
    """Write the starter config; never over an existing file."""
    with path.open("x", encoding="utf-8") as out:
        out.write(STARTER)


def redacted(raw: dict[str, Any], secrets: set[tuple[str, ...]]) -> str:
    """The effective config as TOML-like lines, secrets shown as `***`."""
    lines: list[str] = []

    def table(node: dict[str, Any], key: tuple[str, ...]) -> None:
        plain = {k: v for k, v in node.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in node.items() if isinstance(v, dict)}
        if key and plain:
            lines.append(f"[{'.'.join(key)}]")
        for name, value in plain.items():
            shown = '"***"' if (*key, name) in secrets else _value(value)
            lines.append(f"{name} = {shown}")
        if key and plain:
            lines.append("")
        for name, value in nested.items():
            table(value, (*key, name))

    table(raw, ())
    return "\n".join(lines).rstrip() + "\n"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)
