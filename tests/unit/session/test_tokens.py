"""Token estimation (SPEC §4.1): text, messages, tools, media, anchoring and calibration."""

import io

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from services.session import tokens
from services.session.providers.content_parts import user_text
from services.session.providers.protocol import InlineMedia, MediaNote, ModelRequest
from services.session.tokens import Calibration, Estimate
from shared.ids import SessionId, ToolCallId, TurnId
from shared.messages.contract import Attachment, Sender
from shared.messages.history import (
    AssistantMessage,
    Compacted,
    HistoryEvent,
    Notice,
    SessionStarted,
    ToolCall,
    ToolResult,
    ToolResults,
    TurnFinished,
    TurnStarted,
    Usage,
    UserMessage,
)
from shared.messages.tools import ToolSpec
from shared.model_config import ModelConfig
from tests.kit.attachments import png

T1 = TurnId("t1")
NO_USAGE = Usage()
ADA = Sender(display_name="Ada")


def model(*capabilities: str, chars_per_token: float = 4.0) -> ModelConfig:
    table = {"provider": "openai_chat", "model": "m", "capabilities": ["tools", *capabilities]}
    return msgspec.convert(table | {"chars_per_token": chars_per_token}, ModelConfig)


MODEL = model("image_in", "pdf_in", "audio_in")


def user(text: str, *files: Attachment) -> UserMessage:
    return UserMessage(turn_id=T1, text=text, sender=ADA, attachments=list(files))


def assistant(text: str, *calls: tuple[str, str], usage: Usage = NO_USAGE) -> AssistantMessage:
    tool_calls = [
        ToolCall(call_id=ToolCallId(f"c{n}"), provider_call_id=f"p{n}", name=name, arguments=args)
        for n, (name, args) in enumerate(calls)
    ]
    return AssistantMessage(turn_id=T1, text=text, tool_calls=tool_calls, model="m", usage=usage)


def results(*contents: str, files: tuple[Attachment, ...] = ()) -> ToolResults:
    return ToolResults(
        turn_id=T1,
        results=[
            ToolResult(
                call_id=ToolCallId(f"c{n}"), tool="shell", content=content, attachments=list(files)
            )
            for n, content in enumerate(contents)
        ],
    )


def attachment(name: str, media_type: str, size: int = 100) -> Attachment:
    return Attachment(
        object_name=f"cli_x/{name}",
        file_name=name,
        media_type=media_type,
        size=size,
        path=f"upload/{name}",
    )


def request(*history: HistoryEvent, system_prompt: str = "", notice: str | None = None, **media):
    return ModelRequest(
        system_prompt=system_prompt, history=list(history), tools=[], notice=notice, media=media
    )


# --- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("abcd", 1),
        ("abcde", 2),
        ("abcdefgh", 2),
        ("héllo", 2),  # 4 ASCII → 1, é → 1
        ("日本語", 3),  # each non-ASCII char is a token
        ("日本語 is Japanese", 3 + 3),  # 12 ASCII chars → 3
        ("🙂🙂", 2),
    ],
)
def test_text_is_ascii_chars_over_four_plus_each_non_ascii_char(text, expected):
    assert tokens.text_tokens(text) == expected


def test_chars_per_token_overrides_the_ascii_divisor():
    assert tokens.text_tokens("abcdefghij", chars_per_token=2.0) == 5
    assert tokens.text_tokens("abcdefghij", chars_per_token=3.0) == 4  # ceil(10 / 3)
    assert tokens.text_tokens("abcdefghij é", chars_per_token=2.5) == 5 + 1  # ceil(11 / 2.5)
    # The model's `chars_per_token` is the divisor for the messages of its requests.
    notice = Notice(turn_id=T1, tag="Cancelled", text="x" * 20)
    assert tokens.event_tokens(notice, model(chars_per_token=2.0), {}) == 4 + 10
    assert tokens.event_tokens(notice, model(), {}) == 4 + 5


# --- messages -----------------------------------------------------------------------------------


def test_each_message_adds_four_tokens():
    assert tokens.event_tokens(user("abcdefgh"), MODEL, {}) == 4 + 2
    assert tokens.event_tokens(assistant("abcd"), MODEL, {}) == 4 + 1
    notice = Notice(turn_id=T1, tag="Cancelled", text="[Cancelled] stop")  # 16 chars
    assert tokens.event_tokens(notice, MODEL, {}) == 4 + 4


def test_an_assistant_message_counts_its_text_and_each_calls_name_and_arguments():
    message = assistant("ok", ("shell", '{"command":"ls"}'), ("read_file", '{"path":"a"}'))
    # "ok" 1; "shell" 2 + 16 chars 4; "read_file" 3 + 12 chars 3
    assert tokens.event_tokens(message, MODEL, {}) == 4 + 1 + (2 + 4) + (3 + 3)


def test_each_tool_result_is_a_message():
    assert tokens.event_tokens(results("abcd", "abcdefgh"), MODEL, {}) == (4 + 1) + (4 + 2)


def test_a_user_message_counts_its_attachment_lines():
    message = user("hi", attachment("a.bin", "application/octet-stream", size=40))
    listed = "hi\n\nAttachments:\n- upload/a.bin (a.bin, application/octet-stream, 40 B)"
    note = MediaNote(text="[note]")  # 6 chars: 2 tokens
    expected = 4 + tokens.text_tokens(listed) + 2
    assert tokens.event_tokens(message, MODEL, {"cli_x/a.bin": note}) == expected


def test_a_compaction_counts_as_its_user_message_and_bookkeeping_as_nothing():
    compacted = Compacted(
        session_id=SessionId("s1"), number=1, summary="x" * 40, tail_from_seq=9, turns=2
    )
    tag = "[Stellaclaw Context Compression]\n\n"  # 34 chars
    assert tokens.event_tokens(compacted, MODEL, {}) == 4 + tokens.text_tokens(tag + "x" * 40)
    assert tokens.event_tokens(compacted, MODEL, {}) == 4 + 19
    bookkeeping: list[HistoryEvent] = [
        SessionStarted(session_id=SessionId("s1"), session_type="foreground", model="m"),
        TurnStarted(turn_id=T1, input_seq=1),
        TurnFinished(turn_id=T1, outcome="answered"),
    ]
    assert [tokens.event_tokens(event, MODEL, {}) for event in bookkeeping] == [0, 0, 0]


def test_a_tool_schema_is_its_json_over_four_plus_eight():
    shell = ToolSpec(
        name="shell", description="Run a command.", parameters=msgspec.Raw(b'{"type":"object"}')
    )
    # {"name":"shell","description":"Run a command.","parameters":{"type":"object"}}: 78 chars
    assert tokens.tool_tokens(shell) == 20 + 8


def test_a_request_is_its_system_prompt_tools_events_and_notice():
    shell = ToolSpec(
        name="shell", description="Run a command.", parameters=msgspec.Raw(b'{"type":"object"}')
    )
    whole = ModelRequest(
        system_prompt="s" * 40,  # as text: 10, no message overhead
        history=[user("abcd"), assistant("abcdefgh")],
        tools=[shell, shell],
        notice="[Plan Reminder]!",  # 16 chars
    )
    assert tokens.request_tokens(whole, MODEL) == 10 + 2 * 28 + (4 + 1) + (4 + 2) + (4 + 4)
    assert tokens.request_tokens(request(system_prompt="s" * 40), MODEL) == 10


# --- media --------------------------------------------------------------------------------------


def image_bytes(width: int, height: int, image_format: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, format=image_format, **options)
    return out.getvalue()


def inline(kind, media_type: str, data: bytes) -> InlineMedia:
    return InlineMedia(kind=kind, media_type=media_type, file_name="f", data=data)


def test_image_sizes_are_read_from_real_headers():
    assert tokens.image_size(png(123, 45)) == (123, 45)
    assert tokens.image_size(image_bytes(300, 200, "JPEG")) == (300, 200)
    assert tokens.image_size(image_bytes(300, 200, "JPEG", progressive=True)) == (300, 200)
    assert tokens.image_size(image_bytes(77, 66, "GIF")) == (77, 66)
    assert tokens.image_size(image_bytes(321, 123, "WEBP")) == (321, 123)
    assert tokens.image_size(image_bytes(321, 123, "WEBP", lossless=True)) == (321, 123)
    assert tokens.image_size(b"not an image") is None
    assert tokens.image_size(b"\xff\xd8\xff") is None  # a truncated JPEG


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png(100, 75), 10),  # 7,500 px / 750
        (png(101, 75), 11),  # 7,575 px: rounded up
        (image_bytes(300, 200, "JPEG"), 80),
        (png(2000, 2000), 1600),  # capped
        (b"", 1600),  # a Files API id, no bytes: unknown size
        (b"garbage", 1600),
    ],
)
def test_an_image_is_its_pixels_over_750_up_to_1600(data, expected):
    part = inline("image", "image/png", data)
    photo = attachment("p.png", "image/png")
    assert tokens.event_tokens(user("", photo), MODEL, {"cli_x/p.png": part}) == (
        4 + tokens.text_tokens(user_text(user("", photo))) + expected
    )


def pdf(pages: int) -> bytes:
    out = io.BytesIO()
    first, *rest = [Image.new("RGB", (50, 50)) for _ in range(pages)]
    first.save(out, format="PDF", save_all=True, append_images=rest)
    return out.getvalue()


def test_a_pdf_is_1500_tokens_a_page_and_3000_when_unknown():
    doc = attachment("d.pdf", "application/pdf")
    assert tokens.pdf_pages(pdf(3)) == 3
    assert tokens.pdf_pages(b"<</Type /Pages /Kids [3 0 R]>> <</Type/Page>> <</Type /Page>>") == 2
    for data, expected in [(pdf(1), 1500), (pdf(3), 4500), (b"", 3000), (b"%PDF-1.7", 3000)]:
        part = inline("document", "application/pdf", data)
        assert tokens.attachment_tokens(doc, MODEL, {"cli_x/d.pdf": part}) == expected


def test_audio_is_4000_a_file_and_a_note_its_text():
    voice = attachment("v.wav", "audio/wav")
    part = inline("audio", "audio/wav", b"RIFF....WAVE")
    assert tokens.attachment_tokens(voice, MODEL, {"cli_x/v.wav": part}) == 4000
    note = MediaNote(text="n" * 41)
    assert tokens.attachment_tokens(voice, MODEL, {"cli_x/v.wav": note}) == 11


def test_a_file_is_its_size_as_text():
    notes = attachment("notes.txt", "text/plain", size=1001)
    part = inline("file", "text/plain", b"x" * 1001)
    assert tokens.attachment_tokens(notes, MODEL, {"cli_x/notes.txt": part}) == 251


def test_a_loaded_file_counts_with_its_tool_result():
    photo = attachment("p.png", "image/png")
    media = {"cli_x/p.png": inline("image", "image/png", png(100, 75))}
    assert tokens.event_tokens(results("abcd", files=(photo,)), MODEL, media) == 4 + 1 + 10


def test_an_attachment_not_normalized_yet_counts_as_this_model_would_get_it():
    photo = attachment("p.png", "image/png")
    assert tokens.attachment_tokens(photo, MODEL, {}) == 1600
    assert tokens.attachment_tokens(attachment("d.pdf", "application/pdf"), MODEL, {}) == 3000
    assert tokens.attachment_tokens(attachment("v.wav", "audio/wav"), MODEL, {}) == 4000
    # A model without image input gets the one-line note instead.
    note = (
        "[Attachment not shown to the model: upload/p.png | name: p.png | type: image/png | "
        "reason: the model does not accept image input]"
    )
    assert tokens.attachment_tokens(photo, model(), {}) == tokens.text_tokens(note)


# --- anchoring ----------------------------------------------------------------------------------

REPORTED = Usage(input=1000, cache_read=200, cache_write=50, output=30)


def test_the_estimate_anchors_on_the_last_calls_reported_usage():
    history: list[HistoryEvent] = [
        user("x" * 4000),
        assistant("done", ("shell", "{}"), usage=REPORTED),
    ]
    tail = results("r" * 40)  # 4 + 10
    anchored = tokens.estimate(request(*history, tail), MODEL, Calibration())
    assert anchored == Estimate(tokens=1000 + 200 + 50 + 30 + 14, is_reported=True)
    scaled = tokens.estimate(request(*history, tail), MODEL, Calibration(ratio=2.0))
    assert scaled == Estimate(tokens=1280 + 28, is_reported=True)
    with_notice = request(*history, tail, notice="n" * 8)  # 4 + 2
    assert tokens.estimate(with_notice, MODEL, Calibration()).tokens == 1280 + 14 + 6


def test_without_reported_usage_the_whole_request_is_scaled():
    history: list[HistoryEvent] = [user("x" * 40), assistant("abcd"), results("r" * 40)]
    whole = tokens.request_tokens(request(*history), MODEL)
    assert whole == 14 + 5 + 14
    assert tokens.estimate(request(*history), MODEL, Calibration()) == Estimate(
        tokens=33, is_reported=False
    )
    assert tokens.estimate(request(*history), MODEL, Calibration(ratio=1.5)).tokens == 50  # 49.5
    # Only the last call counts: an earlier report does not anchor a later silent call.
    earlier: list[HistoryEvent] = [
        user("a"),
        assistant("b", usage=REPORTED),
        user("c"),
        assistant("d"),
    ]
    assert not tokens.estimate(request(*earlier), MODEL, Calibration()).is_reported
    # Output alone (no input reported) is no anchor.
    output_only = assistant("b", usage=Usage(output=30))
    assert not tokens.estimate(request(user("a"), output_only), MODEL, Calibration()).is_reported


def test_a_compaction_after_the_reported_call_makes_it_no_anchor():
    compacted = Compacted(
        session_id=SessionId("s1"), number=1, summary="sum", tail_from_seq=9, turns=2
    )
    history: list[HistoryEvent] = [user("a"), assistant("b", usage=REPORTED), compacted, user("c")]
    assert tokens.estimate(request(*history), MODEL, Calibration()) == Estimate(
        tokens=tokens.request_tokens(request(*history), MODEL), is_reported=False
    )


# --- calibration --------------------------------------------------------------------------------


def test_calibration_is_an_ema_fast_for_five_samples_then_slow():
    calibration = Calibration()
    expected = 1.0
    for sample in range(10):
        calibration = calibration.updated(reported=200, estimated=100)  # sample ratio 2.0
        alpha = 0.35 if sample < 5 else 0.15
        expected += alpha * (2.0 - expected)
        assert calibration.ratio == pytest.approx(expected)
        assert calibration.samples == sample + 1
    assert Calibration().updated(200, 100).ratio == pytest.approx(1.35)
    assert Calibration().updated(200, 100).updated(200, 100).ratio == pytest.approx(1.5775)
    assert Calibration(ratio=1.5, samples=5).updated(100, 100).ratio == pytest.approx(1.425)


def test_calibration_is_clamped_to_a_quarter_and_four():
    assert Calibration().updated(reported=100_000, estimated=10) == Calibration(
        ratio=4.0, samples=1
    )
    assert Calibration(ratio=0.3).updated(reported=1, estimated=1_000) == Calibration(
        ratio=0.25, samples=1
    )


@pytest.mark.parametrize(("reported", "estimated"), [(0, 100), (100, 0), (-5, 100), (100, -1)])
def test_calibration_ignores_counts_that_are_not_positive(reported, estimated):
    calibration = Calibration(ratio=1.2, samples=3)
    assert calibration.updated(reported, estimated) == calibration


# --- growth -------------------------------------------------------------------------------------

TEXTS = st.text(max_size=60)
EVENTS = st.one_of(
    TEXTS.map(user),
    st.tuples(TEXTS, TEXTS).map(lambda pair: assistant(pair[0], ("shell", pair[1]))),
    TEXTS.map(results),
    TEXTS.map(lambda text: Notice(turn_id=T1, tag="Time", text=text)),
    st.just(TurnFinished(turn_id=T1, outcome="answered")),
    st.just(user("look", attachment("p.png", "image/png"))),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=30))
def test_a_request_grows_as_events_are_appended(events):
    counts = [tokens.request_tokens(request(*events[:n]), MODEL) for n in range(len(events) + 1)]
    assert counts == sorted(counts)
    messages = [e for e in events if not isinstance(e, TurnFinished)]
    assert counts[-1] >= 4 * len(messages)
