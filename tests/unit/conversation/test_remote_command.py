"""`/remote` per SPEC §12.4 and §6.6: the texts, the changes, and the settings a mode gives."""

from datetime import UTC, datetime

import msgspec

from services.conversation import remote_command, state
from services.conversation.remote_command import CheckFirst, RemoteChange
from shared.ids import ConversationId
from shared.messages.contract import Chat, RemoteSetting
from shared.tools_config import RemoteConfig

BUILD = RemoteConfig(
    host="build.example", user="ci", key_file="/k", host_key="ssh-ed25519 AAAA", root="/srv/work"
)
REMOTES = {"build": BUILD, "gpu": msgspec.structs.replace(BUILD, host="gpu.example")}


LOCAL = RemoteSetting()


def conversation(remote: RemoteSetting = LOCAL) -> state.ConversationState:
    chat = Chat(conversation_id=ConversationId("tg_1"), channel="telegram", kind="private")
    made = state.new_state(chat, "t", "main", datetime.now(UTC))
    return state.with_remote(made, remote)


def test_remote_alone_shows_the_mode_and_the_remotes():
    assert remote_command.answer("", conversation(), REMOTES) == (
        "Remote mode: local — tools run on this server\n"
        "Configured remotes: build (ci@build.example:/srv/work), gpu (ci@gpu.example:/srv/work)"
    )
    fixed = conversation(RemoteSetting(mode="fixed", name="build", path="/srv/x"))
    assert remote_command.show(fixed, REMOTES).startswith(
        "Remote mode: fixed on build (ci@build.example:/srv/x)"
    )
    selectable = conversation(RemoteSetting(mode="selectable"))
    assert remote_command.show(selectable, REMOTES).startswith(
        "Remote mode: selectable — tools may target build, gpu or local"
    )
    assert remote_command.answer("", conversation(), {}) == (
        "Remote mode: local — tools run on this server\n" + remote_command.NONE_CONFIGURED
    )


def test_select_off_unknown_and_bad_forms():
    select = remote_command.answer("select", conversation(), REMOTES)
    assert select == RemoteChange(
        remote=RemoteSetting(mode="selectable"),
        text="Tools may now target any configured remote (build, gpu) or local.",
    )
    off = remote_command.answer("off", conversation(), REMOTES)
    assert off == RemoteChange(
        remote=RemoteSetting(), text="Remote mode off: tools run on this server."
    )
    assert remote_command.answer("nope", conversation(), REMOTES) == (
        "Unknown remote: nope. Configured: build, gpu."
    )
    assert remote_command.answer("build a b", conversation(), REMOTES) == remote_command.USAGE
    assert remote_command.answer("build", conversation(), {}) == remote_command.NONE_CONFIGURED


def test_a_fixed_remote_is_checked_then_applied_or_refused():
    check = remote_command.answer("build /srv/project", conversation(), REMOTES)
    assert check == CheckFirst(name="build", path="/srv/project")
    assert remote_command.answer("build", conversation(), REMOTES) == CheckFirst(
        name="build", path="/srv/work"
    )
    assert isinstance(check, CheckFirst)
    assert remote_command.fixed(check, "connection refused") == (
        "Cannot reach build: connection refused. Remote mode unchanged."
    )
    applied = remote_command.fixed(check, None)
    assert applied == RemoteChange(
        remote=RemoteSetting(mode="fixed", name="build", path="/srv/project"),
        text="Tools now run on build in /srv/project. Uploads and generated files go there too;"
        " skills and shared/ stay on this server.",
    )


def test_fixed_mode_moves_the_workspace_to_the_remotes_pool():
    fixed = conversation(RemoteSetting(mode="fixed", name="build", path="/srv/project"))
    settings = state.settings(fixed, "auto", REMOTES)
    workspace = settings.workspace
    assert (workspace.pool, workspace.path) == ("ssh_build", "workspaces/tg_1")
    assert (workspace.remote, workspace.remote_root) == ("build", "/srv/project")
    assert settings.remote.mode == "fixed"
    gone = state.settings(fixed, "auto", {})  # the remote left the config: local again
    assert (gone.workspace.pool, gone.remote.mode) == ("local", "local")


def test_status_names_the_remote_mode():
    assert remote_command.status_part(conversation(), REMOTES) == "local"
    selectable = conversation(RemoteSetting(mode="selectable"))
    assert remote_command.status_part(selectable, REMOTES) == "selectable: build, gpu"
    fixed = conversation(RemoteSetting(mode="fixed", name="build", path=""))
    assert remote_command.status_part(fixed, REMOTES) == "fixed build:/srv/work"
