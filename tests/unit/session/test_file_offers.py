"""Which outputs the files of a turn's tool calls become: two or more photos of one call go to a
Telegram chat as albums of 2-10 (SPEC §12.8), everything else one output a file."""

from services.session.answers import file_outputs
from shared.ids import ConversationId, ToolCallId, TurnId
from shared.messages.contract import Attachment, Chat
from shared.messages.history import ToolResult
from shared.messages.tools import FileToSend, SendAs

TELEGRAM = Chat(
    conversation_id=ConversationId("tg_42"), channel="telegram", kind="private", chat_id=42
)
CLI = Chat(conversation_id=ConversationId("cli_1"), channel="cli", kind="private")
TURN = TurnId("t1")


def offered(
    name: str, media_type: str = "image/png", *, send_as: SendAs = "auto", size: int = 1000
) -> FileToSend:
    file = Attachment(
        object_name=f"tg_42/{name}", file_name=name, media_type=media_type, size=size, path=name
    )
    return FileToSend(attachment=file, caption=f"about {name}", send_as=send_as)


def result(call_id: str, *sends: FileToSend) -> ToolResult:
    return ToolResult(call_id=ToolCallId(call_id), tool="t", content="{}", sends=list(sends))


def shapes(chat: Chat, *results: ToolResult) -> list[tuple[str, list[str]]]:
    """Each output as its out id and the file names it carries, first to last."""
    return [
        (
            output.out_id,
            [output.file.file_name, *(more.attachment.file_name for more in output.more)],
        )
        for output in file_outputs(chat, TURN, list(results))
    ]


def test_photos_of_one_call_go_as_one_album_with_each_caption():
    images = [
        offered("a.png"),
        offered("b.jpg", "image/jpeg", send_as="photo"),
        offered("c.webp", "image/webp"),
    ]
    [album] = file_outputs(TELEGRAM, TURN, [result("c1", *images)])
    assert album.out_id == "fil_t1_c1_0"
    assert (album.file, album.caption, album.send_as) == (
        images[0].attachment,
        "about a.png",
        "auto",
    )
    assert album.more == images[1:]  # each keeps its caption and send_as
    assert album.turn_id == TURN


def test_a_lone_photo_and_other_files_go_one_by_one_in_order():
    files = [
        offered("report.pdf", "application/pdf"),
        offered("a.png"),
        offered("clip.mp4", "video/mp4"),
    ]
    assert shapes(TELEGRAM, result("c1", *files), result("c2", offered("b.png"))) == [
        ("fil_t1_c1_0", ["report.pdf"]),
        ("fil_t1_c1_1", ["a.png"]),
        ("fil_t1_c1_2", ["clip.mp4"]),
        ("fil_t1_c2_0", ["b.png"]),  # another call's photo: not in the same album
    ]


def test_an_album_takes_the_place_and_out_id_of_its_first_photo():
    files = [
        offered("x.pdf", "application/pdf"),
        offered("a.png"),
        offered("y.zip", "application/zip"),
        offered("b.png"),
    ]
    assert shapes(TELEGRAM, result("c1", *files)) == [
        ("fil_t1_c1_0", ["x.pdf"]),
        ("fil_t1_c1_1", ["a.png", "b.png"]),
        ("fil_t1_c1_2", ["y.zip"]),
    ]


def test_eleven_photos_make_albums_of_six_and_five():
    photos = [offered(f"p{n:02d}.png") for n in range(11)]
    assert shapes(TELEGRAM, result("c1", *photos)) == [
        ("fil_t1_c1_0", [f"p{n:02d}.png" for n in range(6)]),
        ("fil_t1_c1_6", [f"p{n:02d}.png" for n in range(6, 11)]),
    ]
    twenty = [offered(f"q{n:02d}.png") for n in range(20)]
    assert [len(files) for _, files in shapes(TELEGRAM, result("c2", *twenty))] == [10, 10]


def test_files_that_would_not_go_as_photos_stay_out_of_albums():
    files = [
        offered("a.png"),
        offered("b.png", send_as="document"),
        offered("c.gif", "image/gif"),
        offered("d.png", size=10 * 1024 * 1024 + 1),  # past Telegram's 10 MB for a photo
        offered("e.PNG", "IMAGE/PNG"),
    ]
    assert shapes(TELEGRAM, result("c1", *files)) == [
        ("fil_t1_c1_0", ["a.png", "e.PNG"]),
        ("fil_t1_c1_1", ["b.png"]),
        ("fil_t1_c1_2", ["c.gif"]),
        ("fil_t1_c1_3", ["d.png"]),
    ]


def test_the_cli_gets_every_photo_on_its_own():
    photos = [offered("a.png"), offered("b.png")]
    assert shapes(CLI, result("c1", *photos)) == [
        ("fil_t1_c1_0", ["a.png"]),
        ("fil_t1_c1_1", ["b.png"]),
    ]
