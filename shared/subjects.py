"""Every subject, stream, KV bucket, object store, durable and message-id name of Stellaclaw.

No other module spells an `sc.` subject or an `SC_`/`sc_` name; `docs/bus.md` lists the same names
and `tests/test_architecture.py` checks that the two agree.
"""

from typing import Final, Literal

from shared.ids import OutId

Channel = Literal["telegram", "cli"]

# Streams (DESIGN §3).
IN_STREAM: Final = "SC_IN"
SESSION_STREAM: Final = "SC_SESS"
WAKE_STREAM: Final = "SC_WAKE"
TOOL_STREAM: Final = "SC_TOOL"
TOOL_RESULT_STREAM: Final = "SC_TOOLRES"
HISTORY_STREAM: Final = "SC_HIST"
OUT_STREAM: Final = "SC_OUT"
OUT_CLI_STREAM: Final = "SC_OUT_CLI"
EVENTS_STREAM: Final = "SC_EVENTS"

# KV buckets and the object store.
CONV_BUCKET: Final = "sc_conv"
LEASE_BUCKET: Final = "sc_lease"
SESSION_BUCKET: Final = "sc_session"
DELIVERY_BUCKET: Final = "sc_delivery"
PANEL_BUCKET: Final = "sc_panel"
INGRESS_BUCKET: Final = "sc_ingress"
AUTH_BUCKET: Final = "sc_auth"
FILES_STORE: Final = "sc_files"

# Every app subject (what an observer may read).
APP_ALL: Final = "sc.>"

# Subject wildcards the streams listen on.
INBOUND_ALL: Final = "sc.in.*.*"
SESSION_INPUTS_ALL: Final = "sc.sess.*"
WAKES_ALL: Final = "sc.wake.*"
TOOL_REQUESTS_ALL: Final = "sc.tool.req.>"
TOOL_RESULTS_ALL: Final = "sc.tool.res.>"
HISTORY_ALL: Final = "sc.hist.*"
OUTBOUND_TELEGRAM: Final = "sc.out.telegram.*"
OUTBOUND_CLI: Final = "sc.out.cli.*"
EVENTS_ALL: Final = "sc.evt.>"

# Headers that follow a message through every hop.
MSG_ID_HEADER: Final = "Nats-Msg-Id"
TRACE_HEADER: Final = "Sc-Trace"
CONV_HEADER: Final = "Sc-Conv"
# JetStream refuses a publish when the subject's last sequence differs (fenced history appends).
EXPECTED_LAST_SUBJECT_SEQ_HEADER: Final = "Nats-Expected-Last-Subject-Sequence"


def inbound(channel: Channel, conversation_id: str) -> str:
    """Where a channel publishes a conversation's message (SC_IN partitions it on arrival).

    The channel token lets a client's permission stop at its own channel (`sc.in.cli.*`).
    """
    return f"sc.in.{channel}.{conversation_id}"


def inbound_channel(channel: Channel) -> str:
    """Every conversation of one channel: what that channel's publisher may publish on."""
    return f"sc.in.{channel}.*"


def inbound_transform(partitions: int) -> str:
    """SC_IN's subject transform destination: `sc.in.<p>.<channel>.<conv>`, p a hash of both."""
    return "sc.in.{{partition(" + str(partitions) + ",1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}"


def inbound_partition(partition: int) -> str:
    """The filter of the conversation durable that owns one SC_IN partition."""
    return f"sc.in.{partition}.*.*"


# The foundation's layout (workdir version 1), known only to the migration that replaces it (and
# to the test that builds one): SC_IN published on `sc.in.<conv>` and stored as `sc.in.<p>.<conv>`;
# SC_OUT holding every channel's outputs.
LEGACY_INBOUND_ALL: Final = "sc.in.*"
LEGACY_OUTBOUND_ALL: Final = "sc.out.>"


def legacy_inbound_transform(partitions: int) -> str:
    return "sc.in.{{partition(" + str(partitions) + ",1)}}.{{wildcard(1)}}"


def legacy_inbound_partition(partition: int) -> str:
    return f"sc.in.{partition}.*"


def session_input(session_id: str) -> str:
    return f"sc.sess.{session_id}"


def wake(session_id: str) -> str:
    """ "This session has input": one pending wake per session (SC_WAKE keeps one per subject)."""
    return f"sc.wake.{session_id}"


def tool_request(pool: str, session_id: str) -> str:
    return f"sc.tool.req.{pool}.{session_id}"


def tool_requests(pool: str) -> str:
    """A pool's shared durable filter: one token, so runner-specific durables stay possible."""
    return f"sc.tool.req.{pool}.*"


def tool_result(session_id: str, call_id: str) -> str:
    return f"sc.tool.res.{session_id}.{call_id}"


def tool_results(session_id: str) -> str:
    return f"sc.tool.res.{session_id}.*"


def tool_catalog(pool: str) -> str:
    """Core request/reply: any runner of the pool answers with its tool catalog."""
    return f"sc.tool.catalog.{pool}"


def tool_probe(pool: str) -> str:
    """Core request/reply: any runner of the pool says what its host offers (bubblewrap)."""
    return f"sc.tool.probe.{pool}"


def tool_place(pool: str) -> str:
    """Core request/reply: any runner of the pool writes a message's attachments into the
    workspace's `upload/` (PlaceFiles)."""
    return f"sc.tool.place.{pool}"


def tool_cancel(session_id: str, call_id: str) -> str:
    """Core request/reply: the runner holding the call cancels it (call ids are per session)."""
    return f"sc.ctl.tool.cancel.{session_id}.{call_id}"


TOOL_CANCEL_ALL: Final = "sc.ctl.tool.cancel.*.*"  # what every runner listens on


def tool_end(conversation_id: str) -> str:
    """Core, every runner: the conversation's shell sessions and downloads end (`/new`)."""
    return f"sc.ctl.tool.end.{conversation_id}"


TOOL_END_ALL: Final = "sc.ctl.tool.end.*"


def tool_runner(runner_id: str) -> str:
    """Core request/reply to one runner process: a call on a shell session or download it holds,
    forwarded by the runner that took it from the pool, and the sessions' liveness pings."""
    return f"sc.tool.direct.{runner_id}"


TOOL_RUNNERS_ALL: Final = "sc.tool.direct.*"


def session_control(session_id: str) -> str:
    """Core: nudges and status queries for the session's live actor (DESIGN §3)."""
    return f"sc.ctl.sess.{session_id}"


SESSION_CONTROL_ALL: Final = "sc.ctl.sess.*"  # every session instance (one subscription each)


def history(session_id: str) -> str:
    return f"sc.hist.{session_id}"


def outbound(channel: Channel, conversation_id: str) -> str:
    return f"sc.out.{channel}.{conversation_id}"


def outbound_channel(channel: Channel) -> str:
    """Every output for one channel (delivery's filter; a bus client narrows it to its conv)."""
    return f"sc.out.{channel}.*"


def is_outbound(subject: str) -> bool:
    """Is `subject` an output to a chat (what is scrubbed of secrets before it is published)?"""
    return subject.startswith("sc.out.")


def outbound_stream(channel: Channel) -> str:
    """Platform channels' outputs are delivery's (SC_OUT); a bus client reads its own stream."""
    return OUT_CLI_STREAM if channel == "cli" else OUT_STREAM


def event(name: str) -> str:
    return f"sc.evt.{name}"


BAD_MESSAGE_EVENT: Final = event("bad_message")
DEAD_LETTER_EVENT: Final = event("dead_letter")


def usage_event(conv: str) -> str:
    """A model call's usage (SPEC §7.5), by conversation: `/status` sums the last 24 h."""
    return event(f"usage.{conv}")


def usage_msg_id(turn_id: str, call: int) -> str:
    """The dedupe id of a turn's `call`-th model call's usage fact."""
    return f"usage_{turn_id}_{call}"


def turn_event(conv: str) -> str:
    """A turn's end and duration (TurnEnded), by conversation, for metrics."""
    return event(f"turn.{conv}")


def turn_ended_msg_id(turn_id: str) -> str:
    return f"ended_{turn_id}"


def tool_event(conv: str) -> str:
    """A tool call's end and duration (ToolEnded), by conversation, for metrics."""
    return event(f"tool.{conv}")


def tool_ended_msg_id(session_id: str, call_id: str) -> str:
    return f"ended_{session_id}_{call_id}"


def counters(service: str) -> str:
    """Core request/reply (a nats.micro endpoint): a service's message counters."""
    return f"sc.ctl.counters.{service}"


def inbox_prefix(role: str) -> str:
    """A bus role's own reply inbox prefix: no role can subscribe to another role's replies."""
    return f"_INBOX_{role}"


def durable(service: str, part: str = "") -> str:
    """A durable consumer name: the service, then the partition or pool it serves."""
    return f"{service}_{part}" if part else service


# Message ids (`Nats-Msg-Id`) and the ids derived from them.
def telegram_update_msg_id(bot_id: int, update_id: int) -> str:
    return f"tg:{bot_id}:{update_id}"


def cli_msg_id(conversation_id: str, message_id: str) -> str:
    return f"cli:{conversation_id}:{message_id}"


def session_input_msg_id(in_seq: int) -> str:
    return f"in:{in_seq}"


def wake_msg_id(input_seq: int) -> str:
    """The wake of one session input, by its SC_IN sequence."""
    return f"wake:{input_seq}"


def rewake_msg_id(session_id: str, lease_revision: int) -> str:
    """An actor that found input after releasing its lease wakes its session again."""
    return f"rewake:{session_id}:{lease_revision}"


def tool_request_msg_id(session_id: str, call_id: str, attempt: int = 0) -> str:
    """Attempt n > 0: an idempotent call sent again by the owner that took a session over."""
    return f"req:{session_id}:{call_id}" + (f":r{attempt}" if attempt else "")


def tool_result_msg_id(session_id: str, call_id: str) -> str:
    return f"res:{session_id}:{call_id}"


def tool_started_msg_id(session_id: str, call_id: str) -> str:
    return f"start:{session_id}:{call_id}"


def history_msg_id(session_id: str, position: int, writer: str) -> str:
    """An event's id: its position and the writer (one actor's life) that appended it."""
    return f"hist:{session_id}:{position}:{writer}"


def answer_out_id(turn_id: str) -> OutId:
    """The out id of a turn's final answer (also its msg id and its sc_delivery key part)."""
    return OutId(f"ans_{turn_id}")


def file_out_id(turn_id: str, call_id: str, number: int) -> OutId:
    """A file a tool call offered the user (its `number`th)."""
    return OutId(f"fil_{turn_id}_{call_id}_{number}")


def reaction_out_id(input_seq: int) -> OutId:
    """The reaction to one user message, by its SC_IN sequence."""
    return OutId(f"rct_{input_seq}")


def typing_out_id(turn_id: str) -> OutId:
    return OutId(f"typ_{turn_id}")


def leader_key(role: str, bot: str) -> str:
    """sc_lease: the one active instance of a role for a bot (`leader.delivery.<bot>`)."""
    return f"leader.{role}.{bot}"


def progress_out_id(turn_id: str, seq: int) -> OutId:
    """One progress snapshot of a turn (ShowProgress)."""
    return OutId(f"prg_{turn_id}_{seq}")


def stream_out_id(turn_id: str, seq: int) -> OutId:
    """One streamed state of a turn's answer (StreamText)."""
    return OutId(f"str_{turn_id}_{seq}")


def fallback_out_id(turn_id: str) -> OutId:
    """The one "using <fallback> for this turn" notice of a turn (SPEC §7.3)."""
    return OutId(f"fbk_{turn_id}")


AUTH_ADMINS_KEY: Final = "admins"  # sc_auth: the admins recorded by `/admin_authorize`


def auth_chat_key(conversation_id: str) -> str:
    """sc_auth: one chat's access (approved, pending, rejected; SPEC §12.2)."""
    return f"chat.{conversation_id}"


def reply_out_id(in_seq: int) -> OutId:
    """The out id of a command reply, derived from the SC_IN message it answers."""
    return OutId(f"cmd_{in_seq}")


def session_lease_key(session_id: str) -> str:
    return f"sess.{session_id}"


def delivery_key(conversation_id: str, out_id: str) -> str:
    return f"{conversation_id}.{out_id}"


def file_key(conversation_id: str, name: str) -> str:
    """An object's name in sc_files: the conversation's files side by side."""
    return f"{conversation_id}/{name}"


def answer_file(turn_id: str) -> str:
    """The file name of a turn's answer too long for one bus message."""
    return f"answer-{turn_id}.md"
