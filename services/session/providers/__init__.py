"""The wire formats the session speaks, one module each, behind `protocol.Provider` (SPEC §7.2).

A provider module is imported the first time a model of its kind is called, so a session that
never calls one does not pay for its imports.
"""

import importlib

from services.session.providers.protocol import Provider

MODULES = {
    "openai_chat": ("services.session.providers.openai_chat", "OpenAIChat"),
    "openai_responses": ("services.session.providers.openai_responses", "OpenAIResponses"),
    "anthropic": ("services.session.providers.anthropic", "Anthropic"),
    "codex": ("services.session.providers.codex", "Codex"),
}
_loaded: dict[str, Provider] = {}


def provider_for(kind: str) -> Provider:
    """The Provider of a `[models.<name>] provider`."""
    found = _loaded.get(kind)
    if found is None:
        module, name = MODULES[kind]
        found = _loaded[kind] = getattr(importlib.import_module(module), name)()
    return found
