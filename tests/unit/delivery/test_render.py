"""Markdown answers become Telegram parts: text + entities, each part within Telegram's limit."""

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from telegramify_markdown import utf16_len

from services.delivery.bot_api import MessageEntity
from services.delivery.render import (
    MAX_MESSAGE_UNITS,
    Part,
    answer_parts,
    answer_plan,
    document_caption,
    document_name,
    plain_parts,
)

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
        assert_nested_as_telegram_allows(part.entities)


QUOTES = {"blockquote", "expandable_blockquote"}
BLOCKS = {*QUOTES, "pre"}


def assert_nested_as_telegram_allows(entities: tuple[MessageEntity, ...]) -> None:
    """Telegram's rules for block entities (TDLib's are_entities_valid): a quote and a pre that
    share text nest fully, the pre inside; quotes never nest. (Telegram itself splits bold and
    the like where they cross others, so those are telegramify's and Telegram's business.)"""
    blocks = [e for e in entities if e.type in BLOCKS]
    ordered = sorted(blocks, key=lambda e: (e.offset, -e.length, e.type not in QUOTES))
    for outer, inner in pairwise(ordered):
        if inner.offset >= outer.offset + outer.length:
            continue  # apart
        assert inner.offset + inner.length <= outer.offset + outer.length, (outer, inner)
        assert (outer.type, inner.type) in {(q, "pre") for q in QUOTES}, (outer, inner)


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


def fenced(lines: int, tag: str = "code") -> str:
    body = "\n".join(f"{tag}_{n} = compute({n}, {ASTRAL!r})" for n in range(lines))
    return f"```python\n{body}\n```"


def kinds(part: Part) -> list[str]:
    return [e.type for e in part.entities]


def test_a_code_block_of_15_lines_is_folded_and_one_of_14_is_not():
    [long] = answer_parts(f"Long:\n\n{fenced(15)}")
    [short] = answer_parts(f"Short:\n\n{fenced(14, 'c')}")
    assert kinds(long) == ["expandable_blockquote", "pre"]
    [fold, pre] = long.entities
    assert (fold.offset, fold.length) == (pre.offset, pre.length)
    assert kinds(short) == ["pre"]


def test_a_code_block_of_600_chars_on_few_lines_is_folded():
    [part] = answer_parts(f"```\n{'x' * 300}\n{'y' * 300}\n```")
    assert kinds(part) == ["expandable_blockquote", "pre"]


def test_a_quote_of_6_lines_or_360_chars_is_expandable_and_a_short_one_is_not():
    six = "\n".join(f"> line {n}" for n in range(6))
    [part] = answer_parts(f"{six}\n\nthen\n\n> {'w' * 360}\n\nthen\n\n> short\n> quote")
    quotes = [(e.type, covered(part, e)[:6]) for e in part.entities]
    assert quotes == [
        ("expandable_blockquote", "line 0"),
        ("expandable_blockquote", "wwwwww"),
        ("blockquote", "short\n"),
    ]
    assert_well_formed([part])


def test_long_code_inside_a_quote_expands_the_quote_instead_of_nesting_another():
    quoted = "\n".join(f"> {line}" for line in f"Output:\n\n{fenced(20)}".splitlines())
    [part] = answer_parts(quoted)
    assert sorted(kinds(part)) == ["expandable_blockquote", "pre"]
    assert_well_formed([part])


def test_a_10000_char_answer_with_code_arrives_in_parts_with_valid_entities_and_folded_code():
    prose = f"Some **bold {ASTRAL}** text, `inline` and a [link](https://example.com/x). " * 6
    sizes = [20, 30, 60, 200]  # lines of code per section; the last block needs two parts
    answer = "\n\n".join(
        f"## Section {n}\n\n{prose}\n\n{fenced(lines, f's{n}')}" for n, lines in enumerate(sizes)
    )
    assert 10_000 <= len(answer) <= 14_000
    plan = answer_plan(answer)
    assert not plan.document
    assert 3 <= len(plan.parts) <= 12
    assert_well_formed(list(plan.parts))
    text = "\n".join(part.text for part in plan.parts)
    for n, lines in enumerate(sizes):  # every line of code arrived, each in a pre
        assert text.count(f"s{n}_") == lines
    pres = [(part, e) for part in plan.parts for e in part.entities if e.type == "pre"]
    assert len(pres) > len(sizes)  # the long block was cut into several pre blocks
    assert sum(covered(part, e).count("s3_") for part, e in pres) == sizes[3]
    for part, pre in pres:  # and folded when it has 15 lines or more
        assert pre.language == "python"
        folds = [e for e in part.entities if e.type == "expandable_blockquote"]
        is_folded = any((e.offset, e.length) == (pre.offset, pre.length) for e in folds)
        assert is_folded == (covered(part, pre).count("\n") >= 14)


def test_parts_end_where_paragraphs_end_when_they_fit():
    paragraphs = [f"{n:02d} " + "lorem ipsum " * 120 for n in range(12)]  # ~1,450 chars each
    parts = answer_parts("\n\n".join(paragraphs))
    assert len(parts) >= 4
    for part in parts:  # every paragraph arrives whole, in one part
        assert set(part.text.split("\n\n")) <= {p.strip() for p in paragraphs}


def test_list_items_are_not_cut_in_the_middle_when_an_item_boundary_fits():
    items = "\n".join(f"- item {n:03d} " + "word " * 60 for n in range(40))
    parts = answer_parts(items)
    assert len(parts) >= 3
    for part in parts:
        assert all(line.startswith("⦁ item ") for line in part.text.split("\n"))


def test_a_60000_char_answer_goes_as_11_parts_and_the_whole_as_a_document():
    answer = "\n\n".join(f"Paragraph {n:04d}: " + "text " * 80 for n in range(145))
    assert 60_000 <= len(answer) <= 61_000
    plan = answer_plan(answer)
    assert plan.document
    assert len(plan.parts) == 11
    assert_well_formed(list(plan.parts))
    assert plan.parts[0].text.startswith("Paragraph 0000: ")
    assert document_caption(answer) == f"The full answer ({len(answer):,} chars)."
    assert document_name("t_42") == "answer-t_42.md"


def test_an_answer_of_exactly_12_parts_is_sent_whole_without_a_document():
    answer = "\n\n".join("y" * 4000 for _ in range(12))
    plan = answer_plan(answer)
    assert (len(plan.parts), plan.document) == (12, False)


def test_a_huge_answer_is_planned_without_rendering_it_whole():
    plan = answer_plan("word " * 1_000_000)
    assert (len(plan.parts), plan.document) == (11, True)


def test_a_quote_inside_a_quote_becomes_part_of_the_outer_one():
    [part] = answer_parts("> outer\n>\n> > inner\n>\n> end")
    assert part.text == "outer\n\ninner\n\nend"
    [quote] = part.entities
    assert (quote.type, covered(part, quote)) == ("blockquote", part.text)
