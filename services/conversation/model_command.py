"""`/model` and `/reasoning` (SPEC §12.4) as pure functions of the conversation and the config."""

import msgspec

from services.conversation.state import ConversationState
from shared.config import Config
from shared.messages.outbound import Button

EFFORTS = ("default", "minimal", "low", "medium", "high", "xhigh")
REASONING_USAGE = "Usage: /reasoning [default|minimal|low|medium|high|xhigh]"
BUTTONS_PER_ROW = 2


class Shown(msgspec.Struct, frozen=True, kw_only=True):
    """A reply with inline buttons, changing nothing."""

    text: str
    buttons: list[list[Button]]


class ModelChange(msgspec.Struct, frozen=True, kw_only=True):
    """Store `model`, then reply `text` (plus the running turn's note, when one runs)."""

    model: str
    text: str
    previous: str


class ReasoningChange(msgspec.Struct, frozen=True, kw_only=True):
    """Store `effort` ("" = the model's default), then reply `text`."""

    effort: str
    text: str


def selectable(config: Config) -> list[str]:
    return [name for name, model in config.models.items() if model.selectable]


def model(argument: str, current: ConversationState, config: Config) -> Shown | ModelChange | str:
    """`/model [name]`: the model and a keyboard, a switch to store, or the reply."""
    names = selectable(config)
    if not argument:
        found = config.models[current.model]
        window = round(found.context_window / 1000)
        text = (
            f"Current model: {current.model} ({found.provider} · {found.model} · "
            f"{window}k context)\nChoose a model:"
        )
        return Shown(text=text, buttons=rows(names, current.model))
    if argument == current.model:
        return f"Already using {argument}."
    if argument not in names:
        return f"Unknown model: {argument}. Available: {', '.join(names)}."
    return ModelChange(
        model=argument, text=f"Model switched to {argument}.", previous=current.model
    )


def rows(names: list[str], current: str) -> list[list[Button]]:
    """One button per model, BUTTONS_PER_ROW to a row, the current one marked `✓`."""
    buttons = [
        Button(text=f"✓ {name}" if name == current else name, data=f"/model {name}")
        for name in names
    ]
    return [buttons[i : i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)]


def still_running(previous: str) -> str:
    """Added to `Model switched to …` when a turn runs: it finishes with the old model."""
    return f" The running turn finishes with {previous}."


def reasoning(argument: str, current: ConversationState, config: Config) -> ReasoningChange | str:
    """`/reasoning [level]`: the effort to store, or the reply."""
    found = config.models[current.model]
    if not argument:
        default = found.reasoning.effort if found.reasoning and found.reasoning.effort else "none"
        return (
            f"Reasoning effort: {current.reasoning or 'default'} (model default: {default}). "
            f"Options: {', '.join(EFFORTS)}."
        )
    level = argument.lower()
    if level not in EFFORTS:
        return REASONING_USAGE
    ignored = "" if found.can("reasoning") else f" {current.model} ignores reasoning settings."
    effort = "" if level == "default" else level
    return ReasoningChange(effort=effort, text=f"Reasoning effort set to {level}.{ignored}")


def status_line(current: ConversationState) -> str:
    return f"Reasoning: {current.reasoning or 'default'}"
