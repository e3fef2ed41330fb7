"""Files on an SSH remote (SPEC §5.0, §6.6) through a real SSH server serving this machine's files:
SFTP operations, and the walk script giving what the local grep, glob and ls give on one tree."""

import ast
import os
import re
import stat
import tokenize
from pathlib import Path

import asyncssh
import msgspec
import pytest

from services.tools.builtin.glob_files import GlobArgs, glob
from services.tools.builtin.grep_files import GrepArgs, grep
from services.tools.builtin.listing import LsArgs, ls
from services.tools.builtin.walking import glob_regex
from services.tools.remote.files import RemoteFiles, RemoteStat
from services.tools.remote.walk_script import SCRIPT, WalkOp, WalkRequest, run_script, run_walk
from services.tools.results import Result, ToolError
from services.tools.workspace import ToolCall
from tests.kit.ssh import USER, SshServer
from tests.unit.tools.samples import tool_call

MIB = 1 << 20
OPS: dict[type, WalkOp] = {GrepArgs: "grep", GlobArgs: "glob", LsArgs: "ls"}


def connect(server: SshServer):
    pinned = asyncssh.import_known_hosts(f"[127.0.0.1]:{server.port} {server.host_key_line}")
    return asyncssh.connect(
        "127.0.0.1",
        server.port,
        username=USER,
        client_keys=[str(server.key_file)],
        known_hosts=pinned,
        agent_path=None,
    )


@pytest.fixture
async def conn(server):
    async with connect(server) as connection:
        yield connection


@pytest.fixture
async def root(tmp_path):
    (tmp_path / "remote").mkdir()
    return tmp_path / "remote"


@pytest.fixture
async def files(conn, root):
    async with conn.start_sftp_client() as sftp:
        yield RemoteFiles(sftp, str(root), remote="box")


async def failure(work) -> str:
    """`<error_kind>: <message>` of the ToolError `work` raises."""
    with pytest.raises(ToolError) as caught:
        await work
    return f"{caught.value.kind}: {caught.value}"


async def test_paths_resolve_against_the_root_and_absolute_ones_are_allowed(files, root, tmp_path):
    assert files.resolve("a/./b/../c.txt") == f"{root}/a/c.txt"
    assert files.resolve("/etc/hosts") == "/etc/hosts"
    assert files.resolve("../outside.txt") == f"{tmp_path}/outside.txt"
    assert await files.write_atomically("../outside.txt", b"out") is True
    assert await files.write_atomically(str(tmp_path / "abs.txt"), b"abs") is True
    assert (tmp_path / "outside.txt").read_bytes() == b"out"
    assert (tmp_path / "abs.txt").read_bytes() == b"abs"
    assert await failure(files.stat("a\0b")) == "invalid_arguments: the path contains a NUL byte"


async def test_writes_make_parents_and_read_gives_the_bytes(files, root):
    assert await files.write_atomically("notes/deep/a.txt", b"hello\n") is True
    assert (root / "notes/deep/a.txt").read_bytes() == b"hello\n"
    assert await files.read_bytes("notes/deep/a.txt", 6) == b"hello\n"
    assert await files.write_atomically("notes/deep/a.txt", b"again") is False
    assert await files.read_bytes(f"{root}/notes/deep/a.txt", 100) == b"again"
    assert await files.append("logs/a.log", b"one\n") is True
    assert await files.append("logs/a.log", b"two\n") is False
    assert (root / "logs/a.log").read_bytes() == b"one\ntwo\n"


async def test_an_overwrite_replaces_the_file_keeps_its_mode_and_writes_through_links(files, root):
    script = root / "run.sh"
    script.write_text("old")
    script.chmod(0o751)
    inode = script.stat().st_ino
    assert await files.write_atomically("run.sh", b"new") is False
    assert script.read_text() == "new"
    assert stat.S_IMODE(script.stat().st_mode) == 0o751
    assert script.stat().st_ino != inode  # a rename put it there, not a rewrite in place
    assert sorted(os.listdir(root)) == ["run.sh"]  # no temp file left beside it
    (root / "target.txt").write_text("old")
    (root / "link.txt").symlink_to("target.txt")
    assert await files.write_atomically("link.txt", b"new") is False
    assert (root / "link.txt").is_symlink()
    assert (root / "target.txt").read_text() == "new"


async def test_writes_refuse_directories_and_files_in_the_way(files, root):
    (root / "dir").mkdir()
    (root / "file").write_text("x")
    assert (
        await failure(files.write_atomically("dir", b"x"))
        == "exists: dir is a directory; give the path of a file"
    )
    in_the_way = "exists: cannot create the directories of {}: a file is in the way"
    assert await failure(files.write_atomically("file/a", b"x")) == in_the_way.format("file/a")
    assert await failure(files.make_dirs("file/sub")) == in_the_way.format("file/sub")
    assert await failure(files.append("dir", b"x")) == "invalid_arguments: dir is a directory"


async def test_read_errors_match_the_local_ones(files, root):
    (root / "sub").mkdir()
    (root / "big").write_bytes(b"x" * 11)
    assert (
        await failure(files.read_bytes("missing.txt", 10))
        == "not_found: missing.txt does not exist"
    )
    assert await failure(files.read_bytes("sub", 10)) == "invalid_arguments: sub is a directory"
    assert await failure(files.read_bytes("big", 10)) == "too_large: big is over 10 bytes"
    assert await files.read_bytes("big", 11) == b"x" * 11


async def test_stat_follows_links(files, root):
    (root / "sub").mkdir()
    data = root / "data.bin"
    data.write_bytes(b"12345")
    data.chmod(0o640)
    os.utime(data, (1_000, 2_000))
    (root / "alias").symlink_to("data.bin")
    expected = RemoteStat(is_dir=False, is_file=True, size=5, mtime_ns=2_000 * 10**9, mode=0o640)
    assert await files.stat("data.bin") == expected
    assert await files.stat("alias") == expected
    assert msgspec.structs.astuple(await files.stat("sub"))[:2] == (True, False)  # a directory
    assert await files.stat("missing") is None


async def test_remove_deletes_a_file_or_a_link_itself(files, root):
    (root / "a.txt").write_text("a")
    (root / "dir").mkdir()
    (root / "link").symlink_to("a.txt")
    await files.remove("link")
    assert (root / "a.txt").exists()
    assert not (root / "link").is_symlink()
    await files.remove("a.txt")
    assert not (root / "a.txt").exists()
    assert await failure(files.remove("a.txt")) == "not_found: a.txt does not exist"
    assert await failure(files.remove("dir")) == "invalid_arguments: dir is a directory"


async def test_make_dirs_and_rename(files, root):
    await files.make_dirs("x/y/z")
    await files.make_dirs("x/y")  # present ones are fine
    assert (root / "x/y/z").is_dir()
    (root / "part").write_text("new")
    (root / "out").mkdir()
    (root / "out/old.txt").write_text("old")
    await files.rename("part", "out/old.txt")  # replaces the file there
    assert (root / "out/old.txt").read_text() == "new"
    assert not (root / "part").exists()
    (root / "second").write_text("2")
    await files.rename("second", "made/here.txt")  # parents created
    assert (root / "made/here.txt").read_text() == "2"
    assert await failure(files.rename("gone", "b")) == "not_found: gone does not exist"
    (root / "c").write_text("c")
    refused = "exists: out is a directory; give the path of a file"
    assert await failure(files.rename("c", "out")) == refused


async def test_open_write_streams_chunks_into_a_file(files, root):
    (root / "dl").mkdir()
    (root / "dl/file.bin").write_bytes(b"previous content that is longer")
    async with files.open_write("dl/file.bin") as target:
        await target.write(b"chunk one, ")
        await target.write(b"chunk two")
    assert (root / "dl/file.bin").read_bytes() == b"chunk one, chunk two"
    async with files.open_write("new/dir/file.bin") as target:
        await target.write(b"x")
    assert (root / "new/dir/file.bin").read_bytes() == b"x"


async def test_a_closed_connection_is_remote_unreachable(server, root):
    async with connect(server) as connection:
        sftp = await connection.start_sftp_client()
        remote = RemoteFiles(sftp, str(root), remote="box")
    unreachable = "remote_unreachable: cannot reach remote box: "
    assert (await failure(remote.read_bytes("a.txt", 10))).startswith(unreachable)
    assert (await failure(run_walk(connection, str(root), "ls", {}, "box"))).startswith(unreachable)


def put(root: Path, name: str, content: str | bytes, mtime: int = 1_000) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.utime(path, (mtime, mtime))


def build_tree(root: Path) -> None:
    """A workspace with every case the walkers tell apart: order, skips, binary and big files,
    long lines, links (to a file, to a directory, broken) and upper case."""
    put(root, "README.md", "# Title\nneedle here\n", 500)
    put(root, "src/app.py", "import os\nNEEDLE = 1\nneedle()\n", 300)
    put(root, "src/pkg/mod.py", "def f():\r\n    return 'needle'\r\n", 300)
    put(root, "src/pkg/deep/far.ts", "needle()\n", 100)
    put(root, "docs/guide.md", "x\n" * 3 + "a needle\n", 200)
    put(root, "docs/Zeta.MD", "nothing\n", 250)
    for skipped in ("node_modules/lib", ".git", "venv", "__pycache__", ".stellaclaw/x", "build"):
        put(root, f"{skipped}/found.py", "needle\n", 400)
    put(root, ".hidden/secret.txt", "needle\n", 150)
    put(root, "bin/blob.bin", b"needle\0\x01", 600)
    put(root, "big.log", b"needle\n" + b"x" * (5 * MIB), 600)
    put(root, "long.txt", "y" * 700 + "needle" + "z" * 50 + "\n", 50)
    put(root, "Upper.TXT", "NEEDLE\n", 50)
    (root / "empty").mkdir()
    (root / "link.md").symlink_to("README.md")
    (root / "src_link").symlink_to("src")
    (root / "broken").symlink_to("nowhere")


async def run_local(args: GrepArgs | GlobArgs | LsArgs, call: ToolCall) -> Result:
    match args:
        case GrepArgs():
            return await grep(args, call)
        case GlobArgs():
            return await glob(args, call)
        case LsArgs():
            return await ls(args, call)


async def both(conn, call, args) -> tuple[object, object]:
    op = OPS[type(args)]
    local = await run_local(args, call)
    remote = await run_walk(conn, str(call.root), op, msgspec.to_builtins(args), "box")
    return msgspec.to_builtins(local), remote


@pytest.fixture
def call(workdir):
    made = tool_call(workdir)
    build_tree(made.root)
    put(made.shared, "team/notes.md", "needle\n", 700)
    return made


WALKS = [
    GrepArgs(pattern="needle"),
    GrepArgs(pattern="needle", output="lines"),
    GrepArgs(pattern="NEEDLE", case_insensitive=True, output="lines"),
    GrepArgs(pattern=r"^needle\(\)$", output="lines"),
    GrepArgs(pattern="needle", include="*.py"),
    GrepArgs(pattern="needle", include="src/**/*.ts", output="lines"),
    GrepArgs(pattern="needle", path="src"),
    GrepArgs(pattern="needle", path="src/app.py", output="lines"),
    GrepArgs(pattern="needle", path="node_modules"),
    GrepArgs(pattern="needle", path="shared", output="lines"),
    GrepArgs(pattern="absent"),
    GlobArgs(pattern="**/*.md"),
    GlobArgs(pattern="*.md"),
    GlobArgs(pattern="*.MD", path="docs"),
    GlobArgs(pattern="src/**"),
    GlobArgs(pattern="**/*.{py,ts}"),
    GlobArgs(pattern="node_modules/**"),
    GlobArgs(pattern="**/[a-m]*.py"),
    GlobArgs(pattern="?ig.log"),
    GlobArgs(pattern="*.py", path="src"),
    GlobArgs(pattern="**", path="shared"),
    LsArgs(),
    LsArgs(depth=1),
    LsArgs(depth=10),
    LsArgs(path="src"),
    LsArgs(path="README.md"),
    LsArgs(path="shared"),
]


@pytest.mark.parametrize("args", WALKS)
async def test_the_script_gives_what_the_local_tool_gives(conn, call, args):
    local, remote = await both(conn, call, args)
    assert remote == local


FAILING_WALKS = [
    GrepArgs(pattern="(unclosed"),
    GrepArgs(pattern="x", include="{a,b"),
    GrepArgs(pattern="x", path="missing"),
    GlobArgs(pattern="/etc/*"),
    GlobArgs(pattern="{a"),
    GlobArgs(pattern="*", path="README.md"),
    GlobArgs(pattern="*", path="missing"),
    LsArgs(path="missing/deeper"),
]


@pytest.mark.parametrize("args", FAILING_WALKS)
async def test_walk_errors_are_the_local_ones(conn, call, args):
    op = OPS[type(args)]
    local = await failure(run_local(args, call))
    walked = run_walk(conn, str(call.root), op, msgspec.to_builtins(args), "box")
    assert await failure(walked) == local


async def test_the_caps_are_the_local_ones(conn, workdir):
    call = tool_call(workdir)
    for index in range(1_050):
        put(call.root, f"many/f{index:04}.txt", "needle\nneedle\n", 1_000 + index % 7)
    capped = [GrepArgs(pattern="needle"), GrepArgs(pattern="needle", output="lines")]
    for args in [*capped, GlobArgs(pattern="many/*"), LsArgs()]:
        local, remote = await both(conn, call, args)
        assert isinstance(remote, dict)
        assert remote["truncated"] is True
        assert remote == local


GLOBS = [
    ("*.md", ["README.md", "docs/a.md", ".md", "a.mdx"]),
    ("**/*.md", ["README.md", "docs/deep/a.md", "docs/"]),
    ("docs/**", ["docs/deep/a.md", "docs", "doc/x"]),
    ("a?.txt", ["ab.txt", "a/.txt", "a.txt"]),
    ("[ab].txt", ["b.txt", "c.txt"]),
    ("[!ab].txt", ["b.txt", "c.txt"]),
    ("[]a].txt", ["].txt", "a.txt", "b.txt"]),
    ("[a-c^].txt", ["b.txt", "^.txt", "d.txt"]),
    ("[\\].txt", ["\\.txt", "a.txt"]),
    ("*.{ts,tsx}", ["view.tsx", "view.ts", "view.js"]),
    ("{src,lib}/**/*.{py,pyi}", ["src/a.py", "lib/x/b.pyi", "test/a.py"]),
    ("[.txt", ["[.txt", "a.txt"]),
    ("a,b}.txt", ["a,b}.txt"]),
    ("weird$^|.txt", ["weird$^|.txt"]),
    ("{a", None),  # a pattern that makes no regex fails in both
    ("x{y{z}", None),
]


def script_glob_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` translated by the script's own `glob_regex`, run here."""
    script: dict[str, object] = {"__name__": "walk_script"}
    exec(SCRIPT, script)  # defines the functions only: `main` runs under `__main__`
    translate = script["glob_regex"]
    assert callable(translate)
    compiled = translate(pattern)
    assert isinstance(compiled, re.Pattern)
    return compiled


@pytest.mark.parametrize(("pattern", "paths"), GLOBS)
def test_the_scripts_glob_language_is_the_local_one(pattern, paths):
    if paths is None:
        with pytest.raises(re.error):
            glob_regex(pattern)
        with pytest.raises(re.error):
            script_glob_regex(pattern)
        return
    remote_regex = script_glob_regex(pattern)
    for path in paths:
        local = glob_regex(pattern).match(path) is not None
        assert (remote_regex.match(path) is not None) is local, (pattern, path)


def test_the_script_is_ascii_python_3_6():
    """What a 3.6 interpreter cannot run (a walrus, `f"{x=}"`) fails here first."""
    SCRIPT.encode("ascii")
    ast.parse(SCRIPT, feature_version=(3, 6))
    tokens = tokenize.generate_tokens(iter(SCRIPT.splitlines(keepends=True)).__next__)
    strings = [t.string for t in tokens if t.type == tokenize.STRING]
    prefixes = {text[: len(text) - len(text.lstrip("bBrRuUfF"))] for text in strings}
    assert not {prefix for prefix in prefixes if "f" in prefix.lower()}  # no f-strings at all


async def test_a_name_that_is_not_utf8_does_not_break_the_answer(conn, root):
    (root / "ok.txt").write_text("x")
    (root / os.fsdecode(b"bad\xff.txt")).write_text("x")
    result = await run_walk(conn, str(root), "glob", {"pattern": "*.txt"}, "box")
    names = result["filenames"]
    assert isinstance(names, list)
    assert sorted(names) == ["bad?.txt", "ok.txt"]


async def test_the_next_interpreter_is_tried_and_none_is_unavailable(conn, root):
    put(root, "a.txt", "x", 10)
    request = WalkRequest(op="ls", root=str(root), args={})
    result = await run_script(conn, request, "box", interpreters=("no-such-python3", "python3"))
    assert result == {"path": ".", "entries": 1, "truncated": False, "tree": "a.txt (1 B)"}
    walked = run_script(conn, request, "box", interpreters=("no-such-python3", "no-such-python"))
    assert await failure(walked) == "unavailable: remote box needs python3 for grep, glob and ls"
