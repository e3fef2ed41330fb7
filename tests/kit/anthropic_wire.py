"""What the fake Messages API understands of a request: strict Structs (the API refuses fields it
does not know) and `problem`, the checks it answers 400 for."""

import itertools
from typing import Annotated, Literal

import msgspec

from tests.kit.media_wire import AnthropicMedia

API_VERSION = "2023-06-01"


class Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The API refuses fields it does not know ("Extra inputs are not permitted")."""


class CacheControl(Strict, frozen=True, kw_only=True):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class Block(Strict, frozen=True, kw_only=True, tag_field="type"):
    cache_control: CacheControl | None = None


class TextBlock(Block, frozen=True, kw_only=True, tag="text"):
    text: str


class ToolUseBlock(Block, frozen=True, kw_only=True, tag="tool_use"):
    call_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")] = msgspec.field(name="id")
    name: str
    input: dict[str, object]


class ToolResultBlock(Block, frozen=True, kw_only=True, tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | AnthropicMedia] = ""  # images and documents loaded by tools
    is_error: bool = False


class ThinkingBlock(Block, frozen=True, kw_only=True, tag="thinking"):
    thinking: str
    signature: str


class RedactedThinkingBlock(Block, frozen=True, kw_only=True, tag="redacted_thinking"):
    data: str


Replayed = ThinkingBlock | RedactedThinkingBlock
ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock | Replayed | AnthropicMedia


class Thinking(Strict, frozen=True, kw_only=True):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, msgspec.Meta(ge=1024)]


class WireMessage(Strict, frozen=True, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]

    @property
    def blocks(self) -> list[ContentBlock]:
        return [TextBlock(text=self.content)] if isinstance(self.content, str) else self.content


class WireTool(Strict, frozen=True, kw_only=True):
    """A client tool, or (with a `type`) the server's web search."""

    name: str
    type: Literal["custom", "web_search_20250305"] = "custom"
    description: str = ""
    input_schema: dict[str, object] | None = None
    max_uses: int | None = None
    cache_control: CacheControl | None = None

    def __post_init__(self) -> None:  # the API's checks: a decode error, hence a 400
        if self.type == "custom" and self.input_schema is None:
            raise ValueError("tools: input_schema: Field required")
        if self.type == "web_search_20250305" and self.name != "web_search":
            raise ValueError("tools: the web search tool is named web_search")


class MessagesBody(Strict, frozen=True, kw_only=True):
    model: str
    max_tokens: int
    messages: list[WireMessage]
    system: str | list[TextBlock] = ""
    tools: list[WireTool] = []
    stream: bool = False
    tool_choice: dict[str, object] | None = None  # accepted by the API; the fake ignores it
    thinking: Thinking | None = None


class MessagesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request as it crossed the wire."""

    headers: dict[str, str]  # names lower-cased
    body: dict[str, object]  # the JSON body, whole
    typed: MessagesBody  # the same body, typed

    @property
    def roles(self) -> list[str]:
        return [message.role for message in self.typed.messages]

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        return [b for m in self.typed.messages for b in m.blocks if isinstance(b, ToolUseBlock)]

    @property
    def tool_results(self) -> list[ToolResultBlock]:
        return [b for m in self.typed.messages for b in m.blocks if isinstance(b, ToolResultBlock)]


RAW_BODY: msgspec.json.Decoder[dict[str, object]] = msgspec.json.Decoder(dict[str, object])
MESSAGES_BODY: msgspec.json.Decoder[MessagesBody] = msgspec.json.Decoder(MessagesBody)


def problem(headers: dict[str, str], body: MessagesBody) -> str:
    """What the API would answer 400 for, or "" (the fake also insists on alternating roles)."""
    if headers.get("anthropic-version") != API_VERSION:
        return f"anthropic-version: header must be {API_VERSION!r}"
    if not body.stream:
        return "the fake answers only `stream: true`"
    if not body.messages or body.messages[0].role != "user":
        return "messages: the first message must use the user role"
    for previous, message in itertools.pairwise([None, *body.messages, None]):
        found = _turn_problem(previous, message)
        if found:
            return found
    system = [] if isinstance(body.system, str) else body.system
    blocks = [block for message in body.messages for block in message.blocks]
    texts = [body.system] if isinstance(body.system, str) else []
    texts += [block.text for block in [*system, *blocks] if isinstance(block, TextBlock)]
    if any(not text.strip() for text in texts):
        return "messages: text content blocks must contain non-whitespace text"
    markers = sum(item.cache_control is not None for item in [*system, *blocks, *body.tools])
    if markers > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {markers}."
    return _thinking_problem(body)


def _thinking_problem(body: MessagesBody) -> str:
    if body.thinking is None:
        return ""
    if body.thinking.budget_tokens >= body.max_tokens:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    answers = [m for m in body.messages if m.role == "assistant"]
    last = answers[-1].blocks if answers else []
    uses_tools = any(isinstance(block, ToolUseBlock) for block in last)
    if uses_tools and not isinstance(last[0], ThinkingBlock | RedactedThinkingBlock):
        return (
            "messages: a final `assistant` message must start with a thinking block when "
            "`thinking` is enabled"
        )
    return ""


def _turn_problem(previous: WireMessage | None, message: WireMessage | None) -> str:
    """Tool results must answer exactly the tool uses just before them, ahead of other blocks."""
    if previous is not None and message is not None and previous.role == message.role:
        return f"messages: roles must alternate, but two {message.role} messages follow each other"
    uses = [b.call_id for b in previous.blocks if isinstance(b, ToolUseBlock)] if previous else []
    blocks = message.blocks if message is not None else []
    results = [b.tool_use_id for b in blocks if isinstance(b, ToolResultBlock)]
    if not all(isinstance(b, ToolResultBlock) for b in blocks[: len(results)]):
        return "messages: tool_result blocks must come first in their message"
    if sorted(uses) != sorted(results):
        return f"messages: tool_use ids {uses} answered by tool_result ids {results}"
    return ""
