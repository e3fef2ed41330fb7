"""The catalog the session gets: tagged descriptions and top-level object schemas."""

import msgspec

from services.tools import catalog
from services.tools.context import Settings
from services.tools.tool_table import TABLE, TOOLS
from shared.messages.tools import CATALOG_REPLY, ListTools, ToolCatalog
from shared.tools_config import ImagesConfig, SearchConfig

CONFIGURED = Settings(
    search=SearchConfig(api_key="k"), images=ImagesConfig(base_url="http://127.0.0.1:1/v1")
)
EVERY_INPUT = ListTools(capabilities=["tools", "image_in", "pdf_in", "audio_in"])
ALL = catalog.specs(TABLE, EVERY_INPUT, CONFIGURED)


def names(asking: ListTools, settings: Settings = CONFIGURED) -> list[str]:
    return [spec.name for spec in catalog.specs(TABLE, asking, settings)]


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return (
            [str(node["$ref"])] if "$ref" in node else [r for v in node.values() for r in refs(v)]
        )
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_every_schema_is_a_top_level_object_without_refs():
    for spec in ALL:
        schema = msgspec.json.decode(spec.parameters)
        assert schema["type"] == "object", spec.name
        assert "$defs" not in schema
        assert refs(schema) == []
        assert schema["additionalProperties"] is False


def test_descriptions_start_with_the_mode_of_spec_5_0():
    described = {spec.name: spec.description for spec in ALL}
    assert described["shell"].startswith("[interruptible] Run a command with `bash -c`")
    assert described["file_read"].startswith("[immediate] Read a UTF-8 text file")


def test_the_shell_schema_has_exactly_the_spec_arguments():
    shell = next(spec for spec in ALL if spec.name == "shell")
    schema = msgspec.json.decode(shell.parameters)
    assert list(schema["properties"]) == [
        "command",
        "session",
        "input",
        "workdir",
        "wait_s",
        "timeout_s",
        "tty",
        "max_output_chars",
    ]
    assert "required" not in schema  # command, unless session: checked by the tool
    assert schema["properties"]["timeout_s"] | {"description": ""} == {
        "description": "",
        "type": "number",
        "minimum": 1,
        "maximum": 86400,
        "default": 1800.0,
    }


def test_the_traits_follow_spec_5_0():
    shell, file_read = TOOLS["shell"].traits, TOOLS["file_read"].traits
    assert (shell.mode, shell.is_serial, shell.is_idempotent) == ("interruptible", False, False)
    assert (file_read.mode, file_read.is_serial, file_read.is_idempotent) == (
        "immediate",
        False,
        True,
    )


class Inner(msgspec.Struct, frozen=True, kw_only=True):
    depth: int


class Outer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Nested."""

    inner: Inner
    more: list[Inner] = []


def test_nested_structs_are_inlined_too():
    schema = catalog.parameters(Outer)
    assert refs(schema) == []
    assert schema["properties"] == {
        "inner": {
            "title": "Inner",
            "type": "object",
            "properties": {"depth": {"type": "integer"}},
            "required": ["depth"],
        },
        "more": {
            "type": "array",
            "items": {
                "title": "Inner",
                "type": "object",
                "properties": {"depth": {"type": "integer"}},
                "required": ["depth"],
            },
            "default": [],
        },
    }


def test_the_catalog_crosses_the_wire_intact():
    sent = msgspec.json.encode(ToolCatalog(tools=ALL))
    received = CATALOG_REPLY.decode(sent)
    assert [spec.name for spec in received.tools] == [
        "file_read",
        "file_write",
        "edit",
        "apply_patch",
        "grep",
        "glob",
        "ls",
        "shell",
        "shell_close",
        "web_fetch",
        "web_search",
        "file_download_start",
        "file_download_progress",
        "file_download_wait",
        "file_download_cancel",
        "image_load",
        "pdf_load",
        "audio_load",
        "image_generation",
        "send_file",
    ]


def test_media_loads_are_shown_only_to_models_that_take_the_media():
    plain = names(ListTools(capabilities=["tools"]))
    assert not {"image_load", "pdf_load", "audio_load"} & set(plain)
    assert "image_load" in names(ListTools(capabilities=["tools", "image_in"]))
    assert "pdf_load" not in names(ListTools(capabilities=["tools", "image_in"]))


def test_web_search_and_image_generation_need_their_section_and_yield_to_native_ones():
    unconfigured = names(EVERY_INPUT, Settings())
    assert not {"web_search", "image_generation"} & set(unconfigured)
    native = names(ListTools(capabilities=["tools", "web_search", "image_out"]))
    assert not {"web_search", "image_generation"} & set(native)


def test_subagents_get_no_conversation_bridge():
    assert "send_file" in names(ListTools(session_type="background"))
    assert "send_file" not in names(ListTools(session_type="subagent"))


def test_every_tool_has_the_traits_of_spec_5_0():
    modes = {
        name: (t.traits.mode, t.traits.is_serial, t.traits.is_idempotent)
        for name, t in TOOLS.items()
    }
    assert modes["web_fetch"] == ("interruptible", False, True)
    assert modes["file_download_start"] == ("interruptible", False, False)
    assert modes["file_download_wait"] == ("interruptible", False, True)
    assert modes["file_download_cancel"] == ("immediate", False, True)
    assert modes["shell_close"] == ("immediate", False, False)
    assert modes["apply_patch"] == ("immediate", True, False)
    assert modes["image_generation"] == ("interruptible", False, False)
    assert modes["send_file"] == ("immediate", False, True)


def test_every_tools_time_limit_covers_its_calls_own():
    from services.tools.builtin.file_download import FileDownloadWaitArgs, wait_limit_s
    from services.tools.builtin.shell import ShellArgs, time_limit_s
    from services.tools.builtin.web_fetch import WebFetchArgs
    from services.tools.builtin.web_fetch import time_limit_s as fetch_limit_s

    longest_shell = ShellArgs(command="x", wait_s=300, timeout_s=86_400)
    assert TOOLS["shell"].traits.time_limit_s >= time_limit_s(longest_shell)
    assert TOOLS["web_fetch"].traits.time_limit_s >= fetch_limit_s(
        WebFetchArgs(url="x", timeout_s=120)
    )
    longest_wait = FileDownloadWaitArgs(download_id="dl1", wait_s=300)
    assert TOOLS["file_download_wait"].traits.time_limit_s >= wait_limit_s(longest_wait)
    assert all(tool.traits.time_limit_s <= 3_610 for tool in TABLE)
