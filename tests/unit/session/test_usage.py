"""Usage arithmetic (SPEC §7.5): cost from prices, the provider's figure winning, sums."""

import msgspec
import pytest

from services.session import usage
from shared.ids import SessionId, TurnId
from shared.messages.history import AssistantMessage, Compacted, Usage, summed
from shared.model_config import PricesConfig

PRICES = PricesConfig(input=3.0, cached_input=0.3, cache_write=3.75, output=15.0)


def test_the_cost_is_each_kind_of_token_at_its_price():
    used = Usage(input=1_000_000, cache_read=2_000_000, cache_write=100_000, output=10_000)

    cost = usage.priced(used, PRICES).cost

    # 1M at $3, 2M at $0.30, 0.1M at $3.75, 0.01M at $15
    assert cost == pytest.approx(3.0 + 0.6 + 0.375 + 0.15)


def test_cached_input_and_cache_writes_default_to_the_input_price():
    used = Usage(input=500_000, cache_read=500_000, cache_write=1_000_000)

    cost = usage.priced(used, PricesConfig(input=2.0, output=8.0)).cost

    assert cost == pytest.approx(4.0)


def test_reasoning_is_counted_once_as_a_part_of_output():
    used = Usage(output=1_000_000, reasoning=600_000)

    assert usage.priced(used, PRICES).cost == pytest.approx(15.0)


def test_a_reported_cost_wins_and_without_prices_the_cost_is_unknown():
    reported = Usage(input=1_000_000, cost=0.01)

    assert usage.priced(reported, PRICES).cost == 0.01
    assert usage.priced(Usage(input=1_000_000), None).cost is None


def test_sums_add_the_known_costs_and_stay_unknown_without_any():
    calls = [Usage(input=10, output=1, cost=0.5), Usage(input=5, cache_read=7), Usage(cost=0.25)]

    assert summed(calls) == Usage(input=15, cache_read=7, output=1, cost=0.75)
    assert summed([Usage(input=1), Usage(output=2)]).cost is None
    assert summed([]) == Usage()


def test_a_turns_usage_and_the_sessions():
    def said(turn: str, used: Usage) -> AssistantMessage:
        return AssistantMessage(turn_id=TurnId(turn), text="x", model="m", usage=used)

    events = [
        said("t1", Usage(input=100, output=10, cost=0.1)),
        said("t2", Usage(input=200, cache_read=50, output=20)),
        said("t2", Usage(input=30, cache_read=250, cache_write=5, output=7)),
    ]

    assert usage.of_history(events, "t2") == Usage(
        input=230, cache_read=300, cache_write=5, output=27
    )
    assert usage.of_history(events).cost == 0.1


def test_prices_are_checked_like_every_config_table():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"input": -1, "output": 1}, PricesConfig)


def test_a_sessions_usage_includes_what_a_compaction_folded_in():
    folded = Compacted(
        session_id=SessionId("s1"),
        number=1,
        summary="## Goal",
        tail_from_seq=9,
        turns=3,
        usage=Usage(input=1_000, output=100, cost=0.25),
    )
    later = AssistantMessage(
        turn_id=TurnId("t4"), text="x", model="m", usage=Usage(input=10, cost=0.01)
    )

    assert usage.of_history([folded, later]) == Usage(input=1_010, output=100, cost=0.26)
    assert usage.of_history([folded, later], "t4") == Usage(input=10, cost=0.01)
