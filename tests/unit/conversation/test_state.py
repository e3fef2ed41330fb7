"""The pure rules that change a conversation's state: `/new` and its redelivery."""

from datetime import UTC, datetime

from services.conversation import state
from tests.unit.shared.samples import message_received

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def fresh() -> state.ConversationState:
    return state.new_state(message_received("cli_ada", "hi").chat, "Ada", "main", NOW)


def test_new_binds_the_next_foreground_session():
    renewed = state.with_new_session(fresh(), in_seq=7)
    assert (renewed.foreground, renewed.session_counter) == ("cli_ada_fg2", 2)
    assert renewed.new_session_seq == 7
    assert state.replaced_session(renewed) == "cli_ada_fg1"


def test_a_redelivered_new_does_not_bind_another_session():
    once = state.with_new_session(fresh(), in_seq=7)
    again = state.with_new_session(once, in_seq=7)
    assert again == once
    assert state.replaced_session(again) == "cli_ada_fg1"  # its cancel goes to the same session


def test_a_later_new_binds_one_more_session():
    twice = state.with_new_session(state.with_new_session(fresh(), in_seq=7), in_seq=9)
    assert (twice.foreground, twice.session_counter, twice.new_session_seq) == (
        "cli_ada_fg3",
        3,
        9,
    )
    assert state.replaced_session(twice) == "cli_ada_fg2"


def test_a_state_stored_before_new_existed_reads_as_never_renewed():
    stored = b'{"conversation_id":"cli_ada","chat":{"conversation_id":"cli_ada","channel":"cli",'
    stored += b'"kind":"cli"},"title":"Ada","model":"main","workspace":{"pool":"local",'
    stored += b'"path":"workspaces/cli_ada"},"foreground":"cli_ada_fg1","session_counter":1,'
    stored += b'"messages":1,"created_at":"2025-03-01T09:30:00Z","last_message_at":'
    stored += b'"2025-03-01T09:30:00Z"}'
    assert state.STATE.decode(stored).new_session_seq == 0
