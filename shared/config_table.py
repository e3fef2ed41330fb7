"""The base of every `stellaclaw.toml` table."""

import msgspec


class ConfigTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config table: immutable, and a misspelt key is an error."""
