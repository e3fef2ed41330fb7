"""`${VAR}` references in the config: which a process resolves, and what its children get.

A service resolves only the references of the config sections it uses (DESIGN §11): the bot
token reaches ingress and delivery, model keys reach session, and a tools runner on another host
needs neither. The other sections' references stay as written and are only checked for syntax.
`stellaclaw up` and `config check` resolve every reference (service None), so a missing variable
still stops the start with its name.
"""

import re
from collections.abc import Iterator, Mapping

from shared.errors import ConfigError

# The sections whose references only some services resolve. Every other key (workdir, bus, ...)
# is resolved by every process; `[bus.services.<name>]` only by `<name>`.
SECRET_SECTIONS: Mapping[str, frozenset[str]] = {
    "telegram": frozenset({"ingress_telegram", "delivery"}),
    "models": frozenset({"session"}),
    "search": frozenset({"tools"}),
    "images": frozenset({"tools"}),
    "remotes": frozenset({"tools"}),
}
# What every child of the launcher gets besides the variables its own sections reference
# (PYTHONPATH too: a child runs `python -m services.<name>` from wherever `up` found the code).
PASSED_THROUGH = frozenset(
    {"PATH", "HOME", "LANG", "TZ", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PYTHONPATH"}
    | {"http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"}
)
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
Key = tuple[str, ...]


def resolves(service: str | None, key: Key) -> bool:
    """Does `service` (None: every reference) resolve the references under `key`?"""
    if service is None or not key:
        return True
    users = SECRET_SECTIONS.get(key[0])
    if users is not None:
        return service in users
    if key[:2] == ("bus", "services") and len(key) > 2:
        return key[2] == service
    return True


def expand(
    raw: Mapping[str, object], env: Mapping[str, str], service: str | None
) -> dict[str, object]:
    """The tables with `service`'s references replaced from `env`; the rest checked and kept."""
    expanded = _expand(raw, env, service, ())
    assert isinstance(expanded, dict)
    return expanded


def _expand(node: object, env: Mapping[str, str], service: str | None, key: Key) -> object:
    if isinstance(node, dict):
        return {k: _expand(v, env, service, (*key, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(value, env, service, key) for value in node]
    if not isinstance(node, str):
        return node
    names_in(node, key)  # a malformed reference is an error wherever it is
    if not resolves(service, key):
        return node

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if match.group(0) == "$${":
            return "${"
        if name not in env:
            raise ConfigError(f"config: {'.'.join(key)}: environment variable {name} is not set")
        return env[name]

    return _REFERENCE.sub(substitute, node)


def names_in(text: str, key: Key = ()) -> list[str]:
    """The variables `text` references; a `${` that is not `${NAME}` is a ConfigError."""
    found: list[str] = []
    for match in _REFERENCE.finditer(text):
        if match.group(0) == "$${":
            continue
        if match.group(1) is None:
            where = ".".join(key) or "<value>"
            raise ConfigError(
                f"config: {where}: malformed reference in {text!r}; write ${{NAME}} "
                "(letters, digits, _) or $${ for a literal ${"
            )
        found.append(match.group(1))
    return found


def referenced(raw: Mapping[str, object], service: str) -> set[str]:
    """The variables `service` resolves: exactly those the launcher passes it."""
    return {
        name
        for key, text in _strings(raw, ())
        if resolves(service, key)
        for name in names_in(text, key)
    }


def child_environment(
    raw: Mapping[str, object], service: str, env: Mapping[str, str]
) -> dict[str, str]:
    """What a child of `stellaclaw up` inherits: the basics and its own sections' variables."""
    wanted = referenced(raw, service) | PASSED_THROUGH
    return {name: value for name, value in env.items() if name in wanted or name.startswith("LC_")}


def _strings(node: object, key: Key) -> Iterator[tuple[Key, str]]:
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _strings(value, (*key, str(name)))
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value, key)
    elif isinstance(node, str):
        yield key, node
