"""A stored file the runner could not place in the workspace (DESIGN §4): the model still gets it
as SPEC §8.2 says (the bytes are in sc_files), and reads why it is not on disk on its line."""

from services.session import media
from services.session.media import Refused
from services.session.providers.content_parts import user_text
from shared.ids import TurnId
from shared.messages.contract import Sender
from shared.messages.history import UserMessage
from tests.unit.session.test_media import attachment, model

WHY = "not placed in the workspace: no tool runner of pool local answered"


def test_an_unplaced_file_still_goes_to_a_model_that_takes_it():
    cat = attachment("cat.png", "image/png", error=WHY)
    assert media.decide(cat, model("image_in")) == "image"
    assert media.decide(cat, model()) == Refused(reason="the model does not accept image input")


def test_its_line_says_why_and_a_failed_download_keeps_its_note_only():
    unplaced = attachment("notes.txt", "text/plain", size=31, error=WHY)
    failed = attachment("big.zip", "application/zip", object_name="", error="too big")
    message = UserMessage(
        turn_id=TurnId("t1"),
        text="Read these",
        sender=Sender(display_name="Ada"),
        attachments=[unplaced, failed],
    )
    assert user_text(message) == (
        "Read these\n\nAttachments:\n"
        f"- upload/notes.txt (notes.txt, text/plain, 31 B) [{WHY}]\n"
        "- upload/big.zip (big.zip, application/zip, 10 B)"
    )
    assert media.decide(failed, model("file_in")) == Refused(reason="download failed: too big")
