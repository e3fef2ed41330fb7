"""The tools service's own sections of `stellaclaw.toml` (SPEC §14.1): `[tools]`, `[search]`,
`[images]`, `[remotes.<name>]`. Their keys (the Brave key, the images API key, SSH key files) are
resolved only by `tools` (DESIGN §11): no other service, and no model, ever holds them."""

from typing import Annotated, Literal

from msgspec import Meta

from shared.config_table import ConfigTable

HttpUrl = Annotated[str, Meta(pattern=r"^https?://[^\s/]+")]
ImageSize = Annotated[str, Meta(pattern=r"^(\d{2,5}x\d{2,5}|auto)$")]


class ToolsConfig(ConfigTable, frozen=True, kw_only=True):
    """`[tools]`: limits of the web and download tools."""

    allow_private_network: bool = False  # SPEC §5.3: loopback, link-local, private refused
    download_max_mb: Annotated[int, Meta(ge=1, le=1_048_576)] = 2048


class SearchConfig(ConfigTable, frozen=True, kw_only=True):
    """`[search]`: the section enables `web_search` (for models without native search)."""

    provider: Literal["brave"] = "brave"
    api_key: Annotated[str, Meta(min_length=1)]
    base_url: HttpUrl = "https://api.search.brave.com/res/v1"
    timeout_s: Annotated[float, Meta(gt=0, le=600)] = 20.0


class ImagesConfig(ConfigTable, frozen=True, kw_only=True):
    """`[images]`: an OpenAI-compatible images API; the section enables `image_generation`."""

    base_url: HttpUrl
    api_key: str = ""
    model: Annotated[str, Meta(min_length=1)] = "gpt-image-1"
    size: ImageSize = "1024x1024"
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 180.0


REMOTE_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"


class RemoteConfig(ConfigTable, frozen=True, kw_only=True):
    """`[remotes.<name>]` (SPEC §6.6): an SSH host whose tools run pool `ssh_<name>`. The host
    key is pinned (required); agent forwarding is never used."""

    host: Annotated[str, Meta(min_length=1)]
    port: Annotated[int, Meta(ge=1, le=65_535)] = 22
    user: Annotated[str, Meta(min_length=1)]
    key_file: Annotated[str, Meta(min_length=1)]
    host_key: Annotated[str, Meta(pattern=r"^(ssh-|ecdsa-|sk-)\S+ \S+")]  # the server's key line
    root: Annotated[str, Meta(min_length=1)]  # the default remote workspace

    def describe(self) -> str:
        """`user@host:root`, as `/remote` shows it."""
        return f"{self.user}@{self.host}:{self.root}"


def remote_pool(name: str) -> str:
    """The runner pool of remote `name`."""
    return f"ssh_{name}"
