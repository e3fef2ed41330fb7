"""What a runner process gives every call besides its workspace: its id, the tools service's
config sections, the way into `sc_files`, and the state that outlives a call (shell sessions,
downloads), kept per conversation in this process (DESIGN §6: follow-ups come back here)."""

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from shared.tools_config import ImagesConfig, RemoteConfig, SearchConfig, ToolsConfig

if TYPE_CHECKING:
    from services.tools.remote.connections import Remotes

T = TypeVar("T")
StoreFile = Callable[[str, bytes], Awaitable[None]]  # put bytes in sc_files under a name


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """`[tools]`, `[search]` and `[images]` as this runner resolved them (DESIGN §11)."""

    tools: ToolsConfig = ToolsConfig()
    search: SearchConfig | None = None
    images: ImagesConfig | None = None
    remotes: dict[str, RemoteConfig] = msgspec.field(default_factory=dict)


def object_name(conversation_id: str, call_id: str, file_name: str) -> str:
    """Where a tool's file goes in sc_files: under its conversation, named after the call."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in file_name)[-120:] or "file"
    return f"{conversation_id}/tool_{call_id}_{secrets.token_hex(3)}_{safe}"


async def _no_store(name: str, data: bytes) -> None:
    raise RuntimeError(f"this runner has no file store for {name}")


class RunnerContext:
    """One runner process: shared by all its calls."""

    def __init__(
        self,
        runner_id: str = "r-local",
        settings: Settings | None = None,
        store_file: StoreFile = _no_store,
    ) -> None:
        self.runner_id = runner_id
        self.settings = settings or Settings()
        self.store_file = store_file
        self._held: dict[tuple[str, str], object] = {}
        self._remotes: Remotes | None = None

    def remotes(self) -> "Remotes":
        """The SSH connection pools (asyncssh is imported on first use, by a remote call)."""
        if self._remotes is None:
            from services.tools.remote.connections import Remotes

            self._remotes = Remotes(self.settings.remotes)
        return self._remotes

    def held(self, kind: str, conversation_id: str, make: Callable[[], T]) -> T:
        """The `kind` state of a conversation in this process (made on first use)."""
        key = (kind, conversation_id)
        found = self._held.get(key)
        if found is None:
            found = self._held[key] = make()
        return found  # type: ignore[return-value]

    def holding(self, kind: str) -> dict[str, object]:
        """The `kind` state of each conversation that has one in this process (none is made)."""
        return {conv: state for (each, conv), state in self._held.items() if each == kind}

    async def end_conversation(self, conversation_id: str) -> None:
        """End what this runner holds for the conversation (`/new`)."""
        keys = [key for key in self._held if key[1] == conversation_id]
        for key in keys:
            ending = getattr(self._held.pop(key), "end_all", None)
            if ending is not None:
                await ending()

    async def end_all(self) -> None:
        """End everything held (the runner stops): each kind's `end_all` (a remote download
        removes its temp file over its link), then the SSH links."""
        held, self._held = list(self._held.values()), {}
        for state in held:
            ending = getattr(state, "end_all", None)
            if ending is not None:
                await ending()
        if self._remotes is not None:
            await self._remotes.close()
