"""apply_patch per SPEC §5.1: both formats, hunk matching (exact, then whitespace-tolerant,
nearest the hint), CRLF, add / delete / move, check-only, all-or-nothing, malformed patches with
their line, the path rule and the limits."""

import msgspec
import pytest

from services.tools.builtin.apply_patch import ApplyPatchArgs, PatchedFile, apply_patch
from services.tools.catalog import decode
from services.tools.results import ToolError, encode
from tests.unit.tools.samples import tool_call


@pytest.fixture
def call(workdir):
    return tool_call(workdir)


async def patched(call, patch: str, **arguments):
    return await apply_patch(ApplyPatchArgs(patch=patch, **arguments), call)


async def failure(call, patch: str, **arguments) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await patched(call, patch, **arguments)
    return caught.value


def envelope(*lines: str) -> str:
    return "\n".join(["*** Begin Patch", *lines, "*** End Patch", ""])


def put(call, path: str, text: str) -> None:
    target = call.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def text_of(call, path: str):
    return (call.root / path).read_text(encoding="utf-8")


APP = "import os\n\n\ndef main():\n    print('hi')\n    return 1\n"


async def test_an_envelope_update_changes_the_lines_and_keeps_the_mode(call):
    put(call, "src/app.py", APP)
    (call.root / "src/app.py").chmod(0o640)
    hunk = "@@ def main():\n     print('hi')\n-    return 1\n+    return 2"
    result = await patched(call, envelope("*** Update File: src/app.py", hunk))
    assert result.files == [PatchedFile(path="src/app.py", action="update", hunks=1)]
    assert text_of(call, "src/app.py") == APP.replace("return 1", "return 2")
    assert (call.root / "src/app.py").stat().st_mode & 0o777 == 0o640
    assert bytes(encode(result)) == (
        b'{"applied":true,"check_only":false,'
        b'"files":[{"path":"src/app.py","action":"update","hunks":1}]}'
    )


async def test_envelope_add_delete_and_move_in_one_patch(call):
    put(call, "old.txt", "gone\n")
    put(call, "name.txt", "a\nb\nc\n")
    result = await patched(
        call,
        envelope(
            "*** Add File: docs/new.md\n+# New\n\n+text",  # an empty line is an empty line
            "*** Delete File: old.txt",
            "*** Update File: name.txt\n*** Move to: renamed/name.txt\n@@\n a\n-b\n+B",
        ),
    )
    assert result.files == [
        PatchedFile(path="docs/new.md", action="add", hunks=1),
        PatchedFile(path="old.txt", action="delete", hunks=0),
        PatchedFile(path="name.txt", action="move", to="renamed/name.txt", hunks=1),
    ]
    assert text_of(call, "docs/new.md") == "# New\n\ntext\n"
    assert sorted(path.name for path in call.root.glob("*.txt")) == []  # deleted, moved
    assert text_of(call, "renamed/name.txt") == "a\nB\nc\n"
    assert b'"to":"renamed/name.txt"' in bytes(encode(result))


async def test_a_move_without_hunks_renames_the_file(call):
    put(call, "a.txt", "same\n")
    result = await patched(call, envelope("*** Update File: a.txt", "*** Move to: b.txt"))
    assert result.files == [PatchedFile(path="a.txt", action="move", to="b.txt", hunks=0)]
    assert (text_of(call, "b.txt"), (call.root / "a.txt").exists()) == ("same\n", False)


async def test_a_later_change_sees_an_earlier_one(call):
    await patched(call, envelope("*** Add File: a.txt\n+one", "*** Update File: a.txt\n-one\n+two"))
    assert text_of(call, "a.txt") == "two\n"


async def test_a_unified_diff_with_git_prefixes_is_stripped_and_applied(call):
    put(call, "src/app.py", APP)
    put(call, "src/dead.py", "x = 1\n")
    diff = (
        "diff --git a/src/app.py b/src/app.py\nindex 1111111..2222222 100644\n"
        "--- a/src/app.py\n+++ b/src/app.py\n"
        "@@ -1,3 +1,3 @@\n-import os\n+import sys\n \n\n"  # a blank context line lost its space
        "@@ -5,2 +5,2 @@ def main():\n     print('hi')\n-    return 1\n+    return 0\n"
        "--- /dev/null\n+++ b/src/new.py\n@@ -0,0 +1,2 @@\n+A = 1\n+B = 2\n"
        "--- a/src/dead.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n"
    )
    result = await patched(call, diff)
    assert result.files == [
        PatchedFile(path="src/app.py", action="update", hunks=2),
        PatchedFile(path="src/new.py", action="add", hunks=1),
        PatchedFile(path="src/dead.py", action="delete", hunks=1),
    ]
    expected = APP.replace("import os", "import sys").replace("return 1", "return 0")
    assert text_of(call, "src/app.py") == expected
    assert text_of(call, "src/new.py") == "A = 1\nB = 2\n"
    assert not (call.root / "src/dead.py").exists()


async def test_unified_paths_differing_after_the_strip_are_a_move(call):
    put(call, "old.py", "a\n")
    diff = "--- a/old.py\n+++ b/new.py\n@@ -1 +1 @@\n-a\n+b\n"
    result = await patched(call, diff)
    assert result.files == [PatchedFile(path="old.py", action="move", to="new.py", hunks=1)]
    assert text_of(call, "new.py") == "b\n"


async def test_strip_drops_the_leading_path_parts_it_is_given(call):
    put(call, "app.py", "a\n")
    diff = "--- project/app.py\n+++ project/app.py\n@@ -1 +1 @@\n-a\n+b\n"
    assert (await patched(call, diff, strip=1)).files[0].path == "app.py"
    assert text_of(call, "app.py") == "b\n"
    error = await failure(call, diff)  # no a/ and b/: nothing is dropped
    assert (error.kind, str(error)) == ("not_found", "update: project/app.py not found")
    error = await failure(call, diff, strip=2)
    assert (
        str(error)
        == "malformed patch at line 1: cannot drop 2 leading path parts from 'project/app.py'"
    )


async def test_no_newline_at_end_of_file_is_honoured(call):
    put(call, "a.txt", "x\ny")
    diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n x\n-y\n\\ No newline at end of file\n+z\n"
    await patched(call, diff)
    assert text_of(call, "a.txt") == "x\nz\n"


async def test_a_hunk_without_a_match_names_its_place_and_expected_lines(call):
    put(call, "src/app.py", APP)
    first = "@@\n import os\n+import re"
    second = "@@\n def main():\n     print('bye')\n     x = 1\n     y = 2\n     z = 3\n     w = 4"
    error = await failure(call, envelope("*** Update File: src/app.py", first, second, "-    ret"))
    assert (error.kind, str(error)) == (
        "not_found",
        "hunk 2 of src/app.py did not apply: context not found near line 2; it expects:\n"
        "| def main():\n|     print('bye')\n|     x = 1\n|     y = 2\n|     z = 3",
    )
    assert text_of(call, "src/app.py") == APP


async def test_the_unified_hint_is_the_line_named(call):
    put(call, "a.txt", "\n".join(f"line {n}" for n in range(1, 50)) + "\n")
    error = await failure(call, "--- a/a.txt\n+++ b/a.txt\n@@ -40,2 +40,1 @@\n line 40\n-nope\n")
    assert str(error).startswith("hunk 1 of a.txt did not apply: context not found near line 40;")


async def test_whitespace_differences_are_tolerated_and_context_keeps_the_files_text(call):
    put(call, "a.py", "def f():  \n\tif x:\n\t\treturn 1\n")
    hunk = " def f():\n     if x:\n-        return 1\n+        return 2"
    await patched(call, envelope("*** Update File: a.py", hunk))
    # the context lines keep their trailing spaces and tabs; the added line is the patch's
    assert text_of(call, "a.py") == "def f():  \n\tif x:\n        return 2\n"


async def test_an_exact_match_wins_over_a_nearer_whitespace_tolerant_one(call):
    put(call, "a.txt", "x \ny\nx\ny\n")
    await patched(call, "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n x\n-y\n+Y\n")
    assert text_of(call, "a.txt") == "x \ny\nx\nY\n"


async def test_among_several_matches_the_one_nearest_the_hint_wins(call):
    block = "if ready:\n    go()\n"
    put(call, "a.py", block + "".join(f"pad{n}\n" for n in range(20)) + block + "end\n")
    await patched(
        call, "--- a/a.py\n+++ b/a.py\n@@ -20,2 +20,2 @@\n if ready:\n-    go()\n+    stop()\n"
    )
    assert text_of(call, "a.py").count("stop()") == 1
    assert text_of(call, "a.py").endswith("if ready:\n    stop()\nend\n")


async def test_an_envelope_hunk_is_placed_after_its_at_at_line(call):
    put(call, "a.py", "def f():\n    pass\n\ndef g():\n    pass\n")
    await patched(
        call, envelope("*** Update File: a.py", "@@ def g():", "-    pass", "+    return 1")
    )
    assert text_of(call, "a.py") == "def f():\n    pass\n\ndef g():\n    return 1\n"


async def test_end_of_file_anchors_the_hunk_at_the_end(call):
    put(call, "a.txt", "x\nx\nx\n")
    await patched(call, envelope("*** Update File: a.txt", "@@", "-x", "+last", "*** End of File"))
    assert text_of(call, "a.txt") == "x\nx\nlast\n"


async def test_crlf_files_keep_crlf(call):
    (call.root / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    await patched(call, envelope("*** Update File: win.txt", " one", "-two", "+2", "+2.5"))
    assert (call.root / "win.txt").read_bytes() == b"one\r\n2\r\n2.5\r\nthree\r\n"


async def test_check_only_writes_nothing(call):
    put(call, "a.txt", "a\n")
    result = await patched(
        call,
        envelope("*** Update File: a.txt", "-a", "+b", "*** Add File: new.txt", "+n"),
        check=True,
    )
    assert (result.applied, result.check_only, len(result.files)) == (False, True, 2)
    assert text_of(call, "a.txt") == "a\n"
    assert not (call.root / "new.txt").exists()


async def test_a_failing_second_hunk_writes_nothing_at_all(call):
    put(call, "first.txt", "1\n")
    put(call, "second.txt", "a\nb\nc\n")
    error = await failure(
        call,
        envelope(
            "*** Add File: brand/new.txt\n+n",
            "*** Update File: first.txt\n-1\n+one",
            "*** Update File: second.txt\n@@\n-a\n+A\n@@\n-zzz\n+Z",
        ),
    )
    assert str(error).startswith("hunk 2 of second.txt did not apply: context not found")
    assert (text_of(call, "first.txt"), text_of(call, "second.txt")) == ("1\n", "a\nb\nc\n")
    assert not (call.root / "brand").exists()


@pytest.mark.parametrize(
    ("patch", "line", "why"),
    [
        ("\n  \n", 1, "the patch is empty"),
        ("*** Begin Patch\n*** Add File: a.txt\n+a\n", 3, "the patch ends without *** End Patch"),
        (
            envelope("*** Update File: a.txt", "@@", " a", "oops"),
            5,
            "a hunk line starts with a space, - or +, got 'oops'",
        ),
        (
            envelope("*** Add File: a.txt\n+a\nb"),
            4,
            "every line of an added file starts with +, got 'b'",
        ),
        (envelope("*** Update File: a", "*** Delete File: b"), 2, "the update of a has no hunks"),
        (
            envelope("*** Frobnicate File: a.txt"),
            2,
            "expected *** Add File, *** Update File, *** Delete File or *** End Patch,"
            " got '*** Frobnicate File: a.txt'",
        ),
        (envelope("*** Delete File:"), 2, "*** Delete File: needs a path"),
        (envelope("*** Delete File: a.txt") + "more\n", 4, "text after *** End Patch"),
        (
            "just some words\n",
            1,
            "expected *** Begin Patch or a unified diff with --- and +++ file headers",
        ),
        (
            "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n@@ nonsense\n-c\n",
            6,
            "a hunk header looks like @@ -a,b +c,d @@, got '@@ nonsense'",
        ),
        ("@@ -1 +1 @@\n-a\n+b\n", 1, "a hunk before any --- and +++ file header"),
        ("x\n--- /dev/null\n+++ /dev/null\n", 2, "both sides are /dev/null"),
        (envelope("*** Update File: a", "@@ f():", "*** End of File"), 3, "a hunk without lines"),
    ],
)
async def test_a_malformed_patch_names_its_line(call, patch, line, why):
    error = await failure(call, patch)
    expected = ("invalid_arguments", f"malformed patch at line {line}: {why}")
    assert (error.kind, str(error)) == expected


async def test_add_and_move_refuse_an_existing_file(call):
    put(call, "src/new.py", "keep\n")
    put(call, "a.txt", "a\n")
    error = await failure(call, envelope("*** Add File: src/new.py", "+x"))
    assert (error.kind, str(error)) == ("exists", "add: src/new.py already exists")
    error = await failure(call, envelope("*** Update File: a.txt\n*** Move to: src/new.py"))
    assert (error.kind, str(error)) == ("exists", "move: src/new.py already exists")
    assert (text_of(call, "src/new.py"), text_of(call, "a.txt")) == ("keep\n", "a\n")


async def test_update_and_delete_need_the_file(call):
    error = await failure(call, envelope("*** Update File: src/old.py", "-a", "+b"))
    assert (error.kind, str(error)) == ("not_found", "update: src/old.py not found")
    error = await failure(call, envelope("*** Delete File: gone.txt"))
    assert (error.kind, str(error)) == ("not_found", "delete: gone.txt not found")


async def test_a_file_in_the_way_of_a_new_files_directory_is_refused(call):
    put(call, "plain", "x")
    error = await failure(call, envelope("*** Add File: plain/new.txt", "+x"))
    assert (error.kind, str(error)) == (
        "exists",
        "add: cannot create plain/new.txt: plain is a file",
    )


async def test_binary_files_and_directories_are_not_patched(call):
    (call.root / "blob.bin").write_bytes(b"head\0tail\n")
    (call.root / "src").mkdir()
    error = await failure(call, envelope("*** Update File: blob.bin", "-head", "+top"))
    assert (error.kind, str(error)) == (
        "not_text",
        "blob.bin looks binary; apply_patch only changes text files",
    )
    error = await failure(call, envelope("*** Update File: src", "-a", "+b"))
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "update: src is a directory, not a file",
    )


@pytest.mark.parametrize(
    ("path", "kind", "message"),
    [
        ("../x.txt", "outside_workspace", "path is outside the workspace: ../x.txt"),
        ("a/../../x.txt", "outside_workspace", "path is outside the workspace: a/../../x.txt"),
        (
            "/etc/hostname",
            "invalid_arguments",
            "patch paths are relative to the workspace, not absolute: /etc/hostname",
        ),
    ],
)
async def test_paths_leaving_the_workspace_are_refused(call, path, kind, message):
    error = await failure(call, envelope(f"*** Add File: {path}", "+x"))
    assert (error.kind, str(error)) == (kind, message)
    error = await failure(call, envelope("*** Update File: a.txt", f"*** Move to: {path}"))
    assert (error.kind, str(error)) == (kind, message)


async def test_a_symlink_out_of_the_workspace_is_refused(call, workdir):
    outside = workdir / "secret.txt"
    outside.write_text("key\n", encoding="utf-8")
    (call.root / "link.txt").symlink_to(outside)
    (call.root / "door").symlink_to(workdir)
    put(call, "ok.txt", "ok\n")
    for escape in ["*** Update File: link.txt\n-key\n+new", "*** Add File: door/planted.txt\n+x"]:
        error = await failure(call, envelope("*** Update File: ok.txt\n-ok\n+changed", escape))
        assert error.kind == "outside_workspace"
    assert outside.read_text(encoding="utf-8") == "key\n"
    assert not (workdir / "planted.txt").exists()
    assert text_of(call, "ok.txt") == "ok\n"


async def test_more_than_100_files_is_too_large(call):
    adds = [line for n in range(101) for line in (f"*** Add File: f{n}.txt", "+x")]
    error = await failure(call, envelope(*adds))
    assert (error.kind, str(error)) == (
        "too_large",
        "the patch changes 101 files; change at most 100 per call",
    )
    assert not (call.root / "f0.txt").exists()


async def test_a_patch_over_1_mib_is_too_large(call):
    line = "+" + "x" * 1023
    error = await failure(call, envelope("*** Add File: big.txt", *[line] * 1024))
    assert (error.kind, str(error)) == (
        "too_large",
        "the patch is 1.1 MiB; send at most 1 MiB per call",
    )


async def test_an_unpaired_surrogate_is_refused(call):
    error = await failure(call, envelope("*** Add File: a.txt", "+\ud800"))
    assert (error.kind, str(error)) == (
        "invalid_arguments",
        "the patch holds the unpaired surrogate U+D800; send UTF-8 text",
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            b'{"patch": "x", "dry_run": true}',
            'unknown argument "dry_run"; accepted: patch, strip, check',
        ),
        (b'{"patch": "x", "strip": -1}', "Expected `int` >= 0 - at `$.strip`"),
        (b'{"strip": 1}', "Object missing required field `patch`"),
    ],
)
def test_bad_arguments_are_refused_in_msgspecs_words(arguments, message):
    decoder = msgspec.json.Decoder(ApplyPatchArgs)
    with pytest.raises(ToolError) as caught:
        decode(decoder, ApplyPatchArgs, arguments)
    assert (caught.value.kind, str(caught.value)) == ("invalid_arguments", message)
