"""Capping what the model reads: 40 % head, 60 % tail, the whole text spilled (SPEC §5.0)."""

from services.tools import results


def test_a_short_text_is_kept_whole(tmp_path):
    assert results.cap("x" * 100_000, tmp_path, "c1") == "x" * 100_000
    assert not (tmp_path / ".stellaclaw").exists()


def test_a_long_result_keeps_head_and_tail_and_spills_the_whole(tmp_path):
    text = "h" * 60_000 + "m" * 10 + "t" * 60_000
    capped = results.cap(text, tmp_path, "c7")
    marker = "…[20010 chars omitted; full output in .stellaclaw/spill/c7.txt]…"
    assert capped == "h" * 40_000 + marker + "t" * 60_000
    assert (tmp_path / ".stellaclaw/spill/c7.txt").read_text(encoding="utf-8") == text


def test_cut_middle_counts_what_it_drops():
    cut = results.cut_middle("0123456789abcdef", 10, "[{omitted}]")
    assert cut == "0123[6]abcdef"


def test_a_long_error_keeps_5000_and_5000():
    message = "a" * 6_000 + "b" * 6_000
    capped = results.cap_error(message)
    assert capped == "a" * 5_000 + "…[2000 chars omitted]…" + "b" * 5_000
    assert results.cap_error("short") == "short"
