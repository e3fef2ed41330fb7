"""The tool table: each tool's argument Struct, function, traits (SPEC §5.0) and JSON schema.

The schema the model sees is `msgspec.json.schema` of the argument Struct, inlined to a top-level
`{"type": "object", ...}`; the description is the Struct's docstring after the mode tag.
"""

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import msgspec

from services.tools.context import Settings
from services.tools.results import Attached, Result, ToolError
from services.tools.workspace import ToolCall
from shared.messages.tools import ListTools, ToolSpec, ToolTraits

A = TypeVar("A", bound=msgspec.Struct)
Started = Callable[[float], Awaitable[None]]  # told the hard limit once the call really starts
Outcome = Result | Attached
Invoke = Callable[[bytes, ToolCall, Started], Awaitable[Outcome]]
Shown = Callable[[ListTools, Settings], bool]
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")


def always(asking: ListTools, settings: Settings) -> bool:
    return True


class Tool(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: type[msgspec.Struct]
    invoke: Invoke  # decode the arguments, then run under the call's hard time limit
    traits: ToolTraits
    shown: Shown = always  # SPEC §5.0's "shown when"


def bind(
    kind: type[A],
    run: Callable[[A, ToolCall], Awaitable[Outcome]],
    limit_s: Callable[[A], float] | float,
) -> Invoke:
    """Decode strictly into `kind`, then run under the hard limit: a tool's fixed one, or the one
    its arguments give (a shell call waits `wait_s`, a fetch `timeout_s`)."""
    decoder = msgspec.json.Decoder(kind)

    async def invoke(arguments: bytes, call: ToolCall, started: Started) -> Outcome:
        args = decode(decoder, kind, arguments)
        hard_s = limit_s if isinstance(limit_s, float) else limit_s(args)
        # The announcement goes out as the tool starts, not before: its ack is not waited for
        # on the way in, only before the result (one connection keeps the order). A side
        # effect waits for it: the stored announcement is its claim on the call.
        announcing = asyncio.ensure_future(started(hard_s))
        if call.claims_start:
            await announcing
        deadline = asyncio.timeout(hard_s)
        try:
            async with deadline:
                result = await run(args, call)
        except TimeoutError:
            if deadline.expired():
                raise ToolError("timed_out", f"timed out after {hard_s:g} s") from None
            raise
        finally:
            await asyncio.wait({announcing})
            refused = None if announcing.cancelled() else announcing.exception()
        if refused is not None:  # the bus refused the announcement: the call fails as a whole
            raise refused
        return result

    return invoke


def decode(decoder: msgspec.json.Decoder[A], kind: type[A], arguments: bytes) -> A:
    """The model's arguments as `kind`, or `invalid_arguments` in msgspec's words."""
    try:
        return decoder.decode(arguments)
    except msgspec.ValidationError as exc:
        unknown = _UNKNOWN_FIELD.match(str(exc))
        if unknown is None:
            raise ToolError("invalid_arguments", str(exc)) from None
        accepted = ", ".join(field.encode_name for field in msgspec.structs.fields(kind))
        message = f'unknown argument "{unknown["name"]}"; accepted: {accepted}'
        raise ToolError("invalid_arguments", message) from None
    except msgspec.DecodeError as exc:
        raise ToolError("invalid_arguments", f"arguments are not valid JSON: {exc}") from None


# SPEC §5.0: the tools that take a `remote` argument in selectable remote mode
REMOTE_TOOLS = frozenset(
    {
        "file_read",
        "file_write",
        "edit",
        "apply_patch",
        "grep",
        "glob",
        "ls",
        "shell",
        "file_download_start",
        "image_load",
        "pdf_load",
        "audio_load",
        "send_file",
    }
)
LOCAL = "local"


def specs(tools: Iterable[Tool], asking: ListTools, settings: Settings) -> list[ToolSpec]:
    """The catalog as the session gets it for a model, session type and remote mode: name,
    tagged description, inlined JSON schema, traits; each tool only where SPEC §5.0 shows it."""
    found = []
    for tool in tools:
        if not tool.shown(asking, settings):
            continue
        schema = parameters(tool.arguments)
        if asking.remotes and tool.name in REMOTE_TOOLS:
            schema = with_remote(schema, asking.remotes)
        found.append(
            ToolSpec(
                name=tool.name,
                description=f"[{tool.traits.mode}] {_docstring(tool.arguments)}",
                parameters=msgspec.Raw(msgspec.json.encode(schema)),
                traits=tool.traits,
            )
        )
    return found


def with_remote(schema: dict[str, object], remotes: list[str]) -> dict[str, object]:
    """The schema with SPEC §5.0's `remote` argument, its enum this conversation's choices."""
    remote = {
        "type": "string",
        "enum": [LOCAL, *remotes],
        "default": LOCAL,
        "description": "where to run it: local (this server) or a configured SSH remote",
    }
    properties = schema.get("properties")
    assert isinstance(properties, dict)
    return schema | {"properties": properties | {"remote": remote}}


def parameters(kind: type[msgspec.Struct]) -> dict[str, object]:
    """The argument schema as one top-level object, every `$ref` into `$defs` replaced."""
    schema = msgspec.json.schema(kind)
    definitions = schema.get("$defs", {})
    inlined = _inline(schema, definitions)
    assert isinstance(inlined, dict)
    inlined.pop("title", None)
    inlined.pop("description", None)  # the tool's description carries it
    if inlined.get("required") == []:  # every argument optional (`shell`: command or session)
        inlined.pop("required")
    return inlined


def _inline(node: object, definitions: dict[str, object]) -> object:
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str):
        return _inline(definitions[reference.removeprefix("#/$defs/")], definitions)
    return {key: _inline(value, definitions) for key, value in node.items() if key != "$defs"}


def _docstring(kind: type[msgspec.Struct]) -> str:
    return " ".join((kind.__doc__ or kind.__name__).split())
