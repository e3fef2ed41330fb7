"""Slash commands: parsing and the replies, as pure functions of the state and the config."""

from typing import Literal

import msgspec

from services.conversation.state import ConversationState
from shared.config import Config

Name = Literal["status", "help", "start"]
KNOWN: tuple[Name, ...] = ("status", "help", "start")


class Command(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # as typed, without the slash and any @bot suffix
    argument: str


def parse(text: str) -> Command | None:
    """`/status@my_bot now` → Command("status", "now"); text that is not a command → None."""
    if not text.startswith("/") or text.startswith("//"):
        return None
    head, _, rest = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    if not name:
        return None
    return Command(name=name, argument=rest.strip())


HELP_LINES = (
    "Stellaclaw — commands",
    "/status — model, session and workspace",
    "/help — this list",
    "Anything else you send goes to the model, which can run commands and read files "
    "in this chat's workspace.",
)


def reply(command: Command, state: ConversationState, config: Config) -> str:
    match command.name:
        case "status":
            return status(state, config)
        case "help":
            return "\n".join(HELP_LINES)
        case "start":
            return "👋 Hi, I'm Stellaclaw.\n" + "\n".join(HELP_LINES)
        case _:
            return f"Unknown command: /{command.name}. Send /help for the list."


def status(state: ConversationState, config: Config) -> str:
    model = config.models[state.model]
    since = state.created_at.strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        (
            "📊 Status",
            f"Model: {state.model} ({model.provider} · {model.model})",
            f"Session: {state.foreground} · since {since}",
            f"Messages: {state.messages}",
            f"Workspace: {state.workspace.path} (pool {state.workspace.pool})",
        )
    )
