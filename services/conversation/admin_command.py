"""Admin commands (SPEC §12.2): `/admin_authorize`, `/admin_chat_list`, `/admin_chat_approve`
and `/admin_chat_reject`, answered only in an admin's private chat."""

from services.conversation.access import ADMIN_ONLY, APPROVED_NOTICE, Gate, Note
from services.conversation.commands import Command
from shared.access import ChatAccess
from shared.messages.contract import Chat, Sender

ALREADY = "This bot already has an admin."
NO_ADMIN_SELF = "Send /admin_authorize in a private chat with the bot."
ORDER = ("pending", "approved", "rejected")
CHANGE = {"pending": "approve", "approved": "reject", "rejected": "approve"}


class Decision:
    """What an approve or reject did: the notes to send, and the chat to end (rejected)."""

    def __init__(self, notes: list[Note], ended: ChatAccess | None = None) -> None:
        self.notes = notes
        self.ended = ended


async def run(gate: Gate, command: Command, chat: Chat, sender: Sender) -> Decision:
    """One admin command from `sender` in `chat`."""
    reply = Note
    if command.name == "admin_authorize":
        if chat.kind != "private":
            return Decision([reply(chat=chat, text=NO_ADMIN_SELF)])
        claimed = await gate.claim(sender)
        return Decision([reply(chat=chat, text=claimed or ALREADY)])
    if chat.kind != "private" or sender.user_id not in await gate.admins():
        return Decision([reply(chat=chat, text=ADMIN_ONLY)])
    if command.name == "admin_chat_list":
        return Decision([reply(chat=chat, text=listing(await gate.chats()))])
    conv = command.argument.split()[0] if command.argument else ""
    approve = command.name == "admin_chat_approve"
    record = await gate.decide(conv, "approved" if approve else "rejected") if conv else None
    if record is None:
        return Decision([reply(chat=chat, text=f"No chat {conv} is known.")])
    if approve:
        notes = [
            reply(chat=chat, text=f"✅ Approved {record.title} ({conv})."),
            reply(chat=record.chat, text=APPROVED_NOTICE),
        ]
        return Decision(notes)
    return Decision([reply(chat=chat, text=f"🚫 Rejected {record.title} ({conv}).")], record)


def listing(chats: list[tuple[str, ChatAccess]]) -> str:
    """Chats grouped pending, approved, rejected: `<conv> · <title> · <since>` and the command
    that changes each."""
    if not chats:
        return "No chat has asked for access yet."
    lines = ["Chats"]
    for state in ORDER:
        group = [(conv, record) for conv, record in chats if record.access == state]
        if not group:
            continue
        lines.append(f"{state.capitalize()}:")
        for conv, record in group:
            action = CHANGE[state]
            lines.append(
                f"{conv} · {record.title} · {record.since:%Y-%m-%d %H:%M} — "
                f"/admin_chat_{action} {conv}"
            )
    return "\n".join(lines)
