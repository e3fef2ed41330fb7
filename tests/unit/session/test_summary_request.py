"""The summary call of a compaction (SPEC §4.3): the slice as text, the instructions, the input."""

import pytest

from services.session import summary_request
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Attachment, Sender
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    Reasoning,
    SessionStarted,
    ToolCall,
    ToolResult,
    ToolResults,
    TurnFinished,
    TurnStarted,
    UserMessage,
)

T1 = TurnId("t1")
ADA = Sender(display_name="Ada")


def attachment(name: str, media_type: str) -> Attachment:
    return Attachment(
        object_name=f"cli_x/{name}", file_name=name, media_type=media_type, size=10, path=name
    )


def user(text: str, *files: Attachment) -> UserMessage:
    return UserMessage(turn_id=T1, text=text, sender=ADA, attachments=list(files))


def call(name: str, arguments: str) -> ToolCall:
    return ToolCall(call_id=ToolCallId("c1"), provider_call_id="p1", name=name, arguments=arguments)


def result(tool: str, content: str, *files: Attachment) -> ToolResult:
    return ToolResult(call_id=ToolCallId("c1"), tool=tool, content=content, attachments=list(files))


def notice(tag: str, text: str) -> Notice:
    return Notice(turn_id=T1, tag=tag, text=text)


def test_a_slice_renders_as_plain_text_entries():
    long_output = "0123456789" * 250  # 2,500 chars
    events: list[HistoryEvent] = [
        SessionStarted(session_id=SessionId("s1"), session_type="foreground", model="m"),
        TurnStarted(turn_id=T1, input_seq=1),
        user("What is in this picture?", attachment("upload/cat.png", "image/png")),
        AssistantMessage(
            turn_id=T1,
            text="Let me look.",
            tool_calls=[call("shell", '{"command":"ls upload"}')],
            model="m",
            reasoning=[Reasoning(provider="anthropic", item="{}", summary="thinking…")],
        ),
        notice("Cancelled", "[Cancelled] The user cancelled the previous turn."),
        ToolResults(turn_id=T1, results=[result("shell", long_output)]),
        AssistantMessage(turn_id=T1, text="A cat.", model="m"),
        TurnFinished(turn_id=T1, outcome="answered"),
    ]
    assert summary_request.render(events) == (
        "USER: What is in this picture?\n"
        "[image: upload/cat.png]\n"
        "\n"
        "ASSISTANT: Let me look.\n"
        "\n"
        'TOOL CALL shell {"command":"ls upload"}\n'
        "\n"
        f"TOOL RESULT shell: {long_output[:2000]}… [cut]\n"
        "\n"
        "ASSISTANT: A cat."
    )


def test_a_previous_summary_comes_first():
    compacted = Compacted(
        session_id=SessionId("s1"),
        number=1,
        summary="## Goal\nFix the build.",
        tail_from_seq=4,
        turns=1,
    )
    events: list[HistoryEvent] = [
        compacted,
        user("and now?"),
        AssistantMessage(turn_id=T1, text="Done.", model="m"),
    ]
    assert summary_request.render(events) == (
        "PREVIOUS SUMMARY:\n## Goal\nFix the build.\n\nUSER: and now?\n\nASSISTANT: Done."
    )
    tail_first: list[HistoryEvent] = [
        user("and now?"),
        compacted,
    ]  # stored order: the tail before its compaction
    assert summary_request.render(tail_first).startswith("PREVIOUS SUMMARY:\n## Goal")


def test_results_and_arguments_up_to_2000_chars_are_whole():
    exact = "x" * 2000
    events: list[HistoryEvent] = [
        AssistantMessage(turn_id=T1, text="", tool_calls=[call("write_file", exact)], model="m"),
        ToolResults(turn_id=T1, results=[result("write_file", exact)]),
    ]
    assert summary_request.render(events) == (
        f"TOOL CALL write_file {exact}\n\nTOOL RESULT write_file: {exact}"
    )
    longer = AssistantMessage(
        turn_id=T1, text=" ", tool_calls=[call("write_file", exact + "y")], model="m"
    )
    assert summary_request.render([longer]) == f"TOOL CALL write_file {exact}… [cut]"


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        ("image/jpeg", "image"),
        ("application/pdf", "pdf"),
        ("audio/ogg", "audio"),
        ("video/mp4", "video"),
        ("application/zip", "file"),
        ("text/plain", "file"),
    ],
)
def test_an_attachment_is_a_placeholder_of_its_kind(media_type, kind):
    file = attachment("upload/f", media_type)
    assert summary_request.render([user("", file)]) == f"USER: [{kind}: upload/f]"


def test_files_a_tool_loaded_follow_its_result():
    loaded = result("image_load", '{"loaded":true}', attachment("shots/a.png", "image/png"))
    events = [ToolResults(turn_id=T1, results=[loaded])]
    assert summary_request.render(events) == (
        'TOOL RESULT image_load: {"loaded":true}\n[image: shots/a.png]'
    )


def test_only_notices_with_user_updates_are_kept():
    events = [
        notice("Edited Message", "[Edited Message] I meant Paris."),
        notice('Reply to Bot: "hello"', '[Reply to Bot: "hello"] why?'),
        notice("Time", "[Time: 2025-01-01 10:00 UTC · 2.0 h since the previous message]"),
        notice("Runtime Prompt Updates", "[Runtime Prompt Updates] sandbox: none"),
        notice("Cancelled", "[Cancelled] The user cancelled the previous turn."),
        notice("Background Result b1", "[Background Result b1 — task] (Already sent to the user.)"),
    ]
    assert summary_request.render(events) == (
        'USER: [Edited Message] I meant Paris.\n\nUSER: [Reply to Bot: "hello"] why?'
    )


def test_an_empty_slice_renders_empty():
    assert summary_request.render([]) == ""
    assert summary_request.render([TurnStarted(turn_id=T1, input_seq=1)]) == ""


def test_the_instructions_ask_for_the_sections_in_order():
    text = summary_request.instructions()
    sections = [
        "## Goal",
        "## Done so far",
        "## Current state",
        "## Open tasks",
        "## Important references",
        "## Next step",
    ]
    positions = [text.index(section) for section in sections]
    assert positions == sorted(positions)
    assert "Invent nothing" in text
    assert "system prompt, skills, the user profile or memory files" in text
    assert "Ignore notices other than user updates" in text
    assert "paths, commands, ids, URLs, error messages" in text


def test_the_input_labels_the_previous_summary_then_the_conversation():
    assert summary_request.summary_input("USER: hi", None) == (
        "CONVERSATION TO SUMMARIZE:\n\nUSER: hi"
    )
    assert summary_request.summary_input("USER: hi", "## Goal\nA.") == (
        "PREVIOUS SUMMARY:\n## Goal\nA.\n\nCONVERSATION TO SUMMARIZE:\n\nUSER: hi"
    )
    assert summary_request.summary_input("USER: hi", "  ") == summary_request.summary_input(
        "USER: hi", None
    )
