"""How history keeps an answer too long for one bus message."""

import msgspec

from services.session.answers import for_history
from shared.messages.outbound import MAX_TEXT_BYTES


def test_a_short_answer_is_kept_whole():
    assert for_history("short") == "short"


def test_a_long_answer_is_cut_in_the_middle_to_fit_one_bus_message():
    text = "".join(f"{n:08d}" for n in range(200_000))  # 1.6 MB
    kept = for_history(text)
    assert len(msgspec.json.encode(kept)) <= MAX_TEXT_BYTES
    assert kept.startswith(text[:1000])
    assert kept.endswith(text[-1000:])
    omitted = int(kept.split("…[")[1].split(" chars")[0])
    assert len(kept) - len(kept.split("…[")[1].split("]…")[0]) - 4 + omitted == len(text)


def test_text_that_escapes_long_in_json_still_fits():
    text = "\x01" * 300_000  # six bytes each once encoded
    assert len(msgspec.json.encode(for_history(text))) <= MAX_TEXT_BYTES
