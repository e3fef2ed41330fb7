"""What ruff cannot check: layering, budgets, names, service shape, and docs that cannot drift."""

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import subjects

ROOT = Path(__file__).resolve().parent.parent
TREES = ("services", "shared", "tests", "bench")
SERVICES = ("ingress_telegram", "conversation", "session", "tools", "delivery")
SHARED_THIRD_PARTY = {"msgspec", "nats", "uvloop"}
BANNED_MODULES = {"utils", "helpers", "common", "misc", "manager", "core", "base"}
NOT_BUS_NAMES = {"SC_CLK_TCK"}  # os.sysconf's clock-tick name, read by bench/
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
NAME_PREFIXES = tuple(f"{p}{s}" for p, s in (("s", "c."), ("S", "C_"), ("s", "c_")))


def python_files(*trees: str) -> Iterator[Path]:
    for tree in trees:
        yield from sorted((ROOT / tree).rglob("*.py"))


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service):
    others = {f"services.{name}" for name in SERVICES if name != service} | {"services.launcher"}
    wrong = [
        (relative(path), module)
        for path in python_files(f"services/{service}")
        for module in imports(path)
        if any(module == o or module.startswith(o + ".") for o in others)
    ]
    assert wrong == []


def test_shared_imports_no_service_and_only_its_three_libraries():
    stdlib = set(__import__("sys").stdlib_module_names)
    wrong = [
        (relative(path), module)
        for path in python_files("shared")
        for module in imports(path)
        if (root := module.split(".")[0]) not in stdlib
        and root != "shared"
        and root not in SHARED_THIRD_PARTY
    ]
    assert wrong == []


def test_only_the_ingress_imports_aiogram():
    wrong = [
        relative(path)
        for path in python_files("services", "shared")
        if any(m.split(".")[0] == "aiogram" for m in imports(path))
        and "ingress_telegram" not in path.parts
    ]
    assert wrong == []


def test_modules_and_functions_stay_within_budget():
    too_long: list[str] = []
    for path in python_files(*TREES):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{relative(path)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{relative(path)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def test_no_module_has_a_junk_drawer_name():
    wrong = [relative(p) for p in python_files(*TREES) if p.stem in BANNED_MODULES]
    assert wrong == []


def test_bus_names_are_spelled_only_in_subjects():
    home = ROOT / "shared" / "subjects.py"
    wrong: list[str] = []
    for path in python_files(*TREES):
        if path == home:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith(NAME_PREFIXES)
                and node.value not in NOT_BUS_NAMES
            ):
                wrong.append(f"{relative(path)}:{node.lineno} {node.value!r}")
    assert wrong == []


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_short_main_and_a_documented_service_module(service):
    main = ROOT / "services" / service / "__main__.py"
    assert len(main.read_text(encoding="utf-8").splitlines()) <= 15
    module = ast.parse((ROOT / "services" / service / "service.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(module) or ""
    for part in ("Consumes:", "Produces:", "Owns:"):
        assert part in doc, f"services/{service}/service.py docstring lacks {part}"
    runs = [n for n in module.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "run"]
    assert len(runs) == 1


def documented_names() -> set[str]:
    text = (ROOT / "docs" / "bus.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([^`]+)`", row)[1] for row in rows}  # type: ignore[index]


def built_names() -> set[str]:
    """Every stream, bucket and subject that shared.subjects builds, with `<param>` placeholders."""
    names: set[str] = set()
    for name, value in vars(subjects).items():
        if name.startswith("_") or name.endswith("_HEADER"):
            continue
        if isinstance(value, str) and value.startswith(NAME_PREFIXES):
            names.add(value)
        elif inspect.isfunction(value) and value.__module__ == subjects.__name__:
            params = inspect.signature(value).parameters
            built = value(*(f"<{p}>" for p in params))
            if isinstance(built, str) and built.startswith(NAME_PREFIXES[0]):
                names.add(built)
    return names


def test_docs_bus_lists_exactly_the_names_subjects_builds():
    documented = documented_names()
    built = built_names() - {subjects.INBOUND_ALL, subjects.SESSION_INPUTS_ALL, subjects.WAKES_ALL}
    built -= {subjects.TOOL_REQUESTS_ALL, subjects.TOOL_RESULTS_ALL, subjects.HISTORY_ALL}
    built -= {subjects.OUTBOUND_TELEGRAM, subjects.OUTBOUND_CLI, subjects.EVENTS_ALL}
    for transform in (subjects.inbound_transform, subjects.legacy_inbound_transform):
        built -= {transform(0).replace("0", "<partitions>", 1)}  # not a subject
    assert sorted(built - documented) == []
    assert sorted(documented - built) == []


def test_readme_shows_the_cli_as_the_parser_describes_it():
    from services.launcher.cli import summary

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- cli -->\n```text\n", 1)[1].split("```", 1)[0]
    assert block == summary()
