"""What the user reads when a turn fails (SPEC §3.8), is cancelled (§3.6) or continued (§3.7)."""

MAX_REASON_CHARS = 160
CANCELLED_NOTICE = "[Cancelled] The user cancelled the previous turn."
NOTHING_RUNNING = "Nothing is running."
CONTINUING = "▶️ Continuing…"
NOTHING_TO_CONTINUE = "There is no interrupted turn to continue right now."
ALREADY_RUNNING = "A turn is already running. Send a message to steer it or /cancel to stop it."


def reason_line(reason: str) -> str:
    line = " ".join(reason.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


def provider_failed(reason: str) -> str:
    return (
        f"⚠️ The model call failed: {reason_line(reason)}. Progress so far is kept. "
        "Send /continue to retry from here."
    )


def auth_refused(model: str, status: int | None) -> str:
    return (
        f"⚠️ Model {model} rejected its credentials (HTTP {status}). The operator must fix "
        f"[models.{model}]. Send /continue after that, or switch with /model."
    )


def context_exceeded() -> str:
    return (
        "⚠️ The conversation no longer fits the model's context window, even after compaction. "
        "Send /compact, switch to a larger model with /model, or /new."
    )


def compaction_failed(reason: str) -> str:
    return (
        f"⚠️ Automatic context compaction failed: {reason}. History is intact. "
        "Send /continue to retry, or /new to start fresh."
    )


def empty_twice() -> str:
    return "⚠️ The model returned an empty answer twice. Send /continue to retry."


def restarts() -> str:
    return "⚠️ This turn was interrupted by repeated restarts. Send /continue to try again."


def internal(error_id: str) -> str:
    return (
        f"⚠️ Something went wrong inside Stellaclaw ({error_id}). "
        "The turn was stopped; your history is kept."
    )


def tools_unavailable(pool: str) -> str:
    return (
        f"⚠️ No tool runner of pool {pool!r} answered, so the turn was stopped. "
        "Send /continue once the tools service is running."
    )


def cancelled(queued: int, background: int = 0, *, everything: bool = False) -> str:
    text = (
        f"⏹ Cancelled the turn and {background} background task(s)."
        if everything
        else "⏹ Cancelled."
    )
    if queued:
        text += f" {queued} queued message(s) were kept and will be read with your next message."
    return text


def broken() -> str:
    return (
        "⚠️ This session's history cannot be read, so it cannot go on. "
        "Send /new to start a fresh session (files are kept)."
    )
