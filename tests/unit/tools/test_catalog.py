"""The catalog the session gets: tagged descriptions and top-level object schemas."""

import msgspec

from services.tools import catalog
from shared.messages.tools import CATALOG_REPLY, ToolCatalog


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return (
            [str(node["$ref"])] if "$ref" in node else [r for v in node.values() for r in refs(v)]
        )
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_every_schema_is_a_top_level_object_without_refs():
    for spec in catalog.specs():
        schema = msgspec.json.decode(spec.parameters)
        assert schema["type"] == "object", spec.name
        assert "$defs" not in schema
        assert refs(schema) == []
        assert schema["additionalProperties"] is False


def test_descriptions_start_with_the_mode_of_spec_5_0():
    described = {spec.name: spec.description for spec in catalog.specs()}
    assert described["shell"].startswith("[interruptible] Run a command with `bash -c`")
    assert described["file_read"].startswith("[immediate] Read a UTF-8 text file")


def test_the_shell_schema_has_exactly_the_spec_arguments():
    shell = next(spec for spec in catalog.specs() if spec.name == "shell")
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
    shell, file_read = catalog.TOOLS["shell"].traits, catalog.TOOLS["file_read"].traits
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
    sent = msgspec.json.encode(ToolCatalog(tools=catalog.specs()))
    received = CATALOG_REPLY.decode(sent)
    assert [spec.name for spec in received.tools] == [
        "file_read",
        "file_write",
        "edit",
        "grep",
        "glob",
        "ls",
        "shell",
        "shell_close",
        "image_load",
        "pdf_load",
        "audio_load",
    ]
