"""What the user reads when a turn fails (SPEC §3.8), one line each."""

MAX_REASON_CHARS = 160


def reason_line(reason: str) -> str:
    line = " ".join(reason.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


def provider_failed(reason: str) -> str:
    return (
        f"⚠️ The model call failed: {reason_line(reason)}. Progress so far is kept; "
        "send a message to try again from here."
    )


def empty_twice() -> str:
    return "⚠️ The model returned an empty answer twice. Send a message to try again."


def internal(error_id: str) -> str:
    return (
        f"⚠️ Something went wrong inside Stellaclaw ({error_id}). "
        "The turn was stopped; your history is kept."
    )


def tools_unavailable(pool: str) -> str:
    return (
        f"⚠️ No tool runner of pool {pool!r} answered, so the turn was stopped. "
        "Send your message again once the tools service is running."
    )
