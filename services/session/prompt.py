"""The system prompt, built when a session starts (never mid-session: prompt caches stay warm)."""

IDENTITY = "You are Stellaclaw, a capable assistant with tools."
RULES = (
    "Your workspace is the current directory of every tool call and your writable area; "
    "relative paths resolve against it.",
    "Verify with tools instead of guessing; say what you checked.",
    "Your final answer is what the user reads: make it complete and self-contained.",
)


def system_prompt(conversation_id: str, model: str) -> str:
    lines = [IDENTITY, "", "Rules:", *(f"- {rule}" for rule in RULES), ""]
    lines += [
        "Environment:",
        f"- conversation: {conversation_id}",
        f"- model: {model}",
        "- shell commands run as plain processes with a cleared environment (no sandbox: they "
        "can read what the Stellaclaw service's user can read)",
    ]
    return "\n".join(lines)
