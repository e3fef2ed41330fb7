"""Markdown answers become Telegram parts: text + entities, each part within Telegram's limit."""

from hypothesis import given, settings
from hypothesis import strategies as st
from telegramify_markdown import utf16_len

from services.delivery.bot_api import MessageEntity
from services.delivery.render import MAX_MESSAGE_UNITS, Part, answer_parts, plain_parts

ASTRAL = "😀🚀\U0001d538"  # each is two UTF-16 units (the last is a double-struck A)


def assert_well_formed(parts: list[Part], max_units: int = MAX_MESSAGE_UNITS) -> None:
    for part in parts:
        units = utf16_len(part.text)
        assert 0 < units <= max_units
        assert part.text.strip()
        for entity in part.entities:
            assert entity.offset >= 0
            assert entity.length > 0
            assert entity.offset + entity.length <= units


def covered(part: Part, entity: MessageEntity) -> str:
    """The text an entity covers, counted in UTF-16 units as Telegram does."""
    encoded = part.text.encode("utf-16-le")
    return encoded[2 * entity.offset : 2 * (entity.offset + entity.length)].decode("utf-16-le")


def test_bold_and_code_become_entities_on_plain_text():
    [part] = answer_parts("Hello **bold** and `code`.")
    assert part.text == "Hello bold and code."
    assert [(e.type, covered(part, e)) for e in part.entities] == [
        ("bold", "bold"),
        ("code", "code"),
    ]


def test_offsets_count_utf16_units_after_astral_characters():
    [part] = answer_parts(f"{ASTRAL} then **bold**")
    [bold] = part.entities
    assert bold.offset == 2 * len(ASTRAL) + len(" then ")
    assert covered(part, bold) == "bold"


def test_a_link_keeps_its_url_and_a_code_block_its_language():
    [part] = answer_parts("See [the docs](https://example.com/a).\n\n```python\nprint(1)\n```")
    kinds = {e.type: e for e in part.entities}
    assert kinds["text_link"].url == "https://example.com/a"
    assert covered(part, kinds["text_link"]) == "the docs"
    assert kinds["pre"].language == "python"
    assert covered(part, kinds["pre"]) == "print(1)"


def test_a_10000_char_answer_with_emoji_splits_into_parts_within_the_limit():
    paragraph = f"Some **bold {ASTRAL}** text and `code` with emoji {ASTRAL * 3}. " * 4
    answer = "\n\n".join([paragraph] * 45)
    assert len(answer) >= 10_000
    parts = answer_parts(answer)
    assert len(parts) >= 3
    assert_well_formed(parts)
    assert all(any(e.type == "bold" for e in part.entities) for part in parts)
    assert "".join(p.text for p in parts).count("bold") == answer.count("**bold")


def test_one_line_without_breaks_is_cut_between_characters_never_inside_a_surrogate_pair():
    answer = ASTRAL * 3000  # 9000 code points, 18000 UTF-16 units, no newline to cut at
    parts = answer_parts(answer)
    assert len(parts) == 5
    assert_well_formed(parts)
    assert "".join(p.text for p in parts) == answer


def test_a_long_code_block_becomes_several_pre_blocks():
    code = "\n".join(f"line_{n} = {n} * 2  # {ASTRAL}" for n in range(400))
    parts = answer_parts(f"Here:\n\n```python\n{code}\n```")
    assert len(parts) >= 3
    assert_well_formed(parts)
    assert all(any(e.type == "pre" for e in part.entities) for part in parts)


def test_parts_do_not_start_or_end_with_a_newline():
    answer = "\n\n".join(["x" * 3000, "**y**" * 300, "z" * 3000])
    parts = answer_parts(answer)
    assert len(parts) >= 2
    assert_well_formed(parts)
    assert all(not p.text.startswith("\n") and not p.text.endswith("\n") for p in parts)


def test_plain_parts_carry_no_entities_and_keep_markdown_as_typed():
    [part] = plain_parts("⚠️ I could not deliver the answer (**Bad Request**).")
    assert part.text == "⚠️ I could not deliver the answer (**Bad Request**)."
    assert part.entities == ()


def test_an_empty_answer_has_no_parts():
    assert answer_parts("") == []
    assert answer_parts("\n\n  \n") == []


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab *_`#>-\n[]()😀\U0001d538é")), max_size=400))
def test_any_markdown_splits_into_well_formed_parts(markdown):
    assert_well_formed(answer_parts(markdown, max_units=40), max_units=40)


def test_an_answer_past_12_parts_keeps_11_and_says_exactly_how_much_was_left_out():
    markdown = "\n".join(f"line {n:05d}" for n in range(5_000))  # 10 chars + newline each
    parts = answer_parts(markdown)
    assert len(parts) == 12
    shown = sum(len(part.text) for part in parts[:11])
    assert parts[11].text.startswith("✂️ The answer was cut here: ")
    left = int(parts[11].text.split(": ")[1].split(" ")[0].replace(",", ""))
    assert len(markdown) - shown - 15 <= left <= len(markdown) - shown  # cut newlines aside
    assert parts[0].text.startswith("line 00000")


def test_a_huge_answer_is_rendered_only_as_far_as_12_parts_reach():
    markdown = "word " * 1_000_000  # 5 MB: never rendered whole
    parts = answer_parts(markdown)
    assert len(parts) == 12
    assert parts[11].text.startswith("✂️ The answer was cut here: about ")
    left = int(parts[11].text.split("about ")[1].split(" ")[0].replace(",", ""))
    assert len(markdown) - 11 * 4096 - 100 < left < len(markdown) - 11 * 4096 + 100
