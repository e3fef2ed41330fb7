"""Import hygiene for the service processes that never use aiohttp.

- nats-py imports aiohttp for its websocket transport whenever aiohttp is installed (aiogram brings
  it). Stellaclaw connects over `nats://` only, and aiohttp costs about 10 MB of resident memory
  in every process, so it is kept out.
- httpcore tries `import sniffio` on every HTTP request; sniffio is not installed, so each request
  paid for a failed search of the import path (about 8 % of the session's CPU per turn). Recording
  the module as absent makes that import fail at once.

The services other than the Telegram ingress call `apply()` before anything imports nats.
"""

import sys

ABSENT = ("aiohttp", "sniffio")


def apply() -> None:
    """Make `import aiohttp` and `import sniffio` fail at once in this process."""
    for name in ABSENT:
        if name not in sys.modules:
            # A None entry is how the import system records a module that must not be imported.
            sys.modules[name] = None  # type: ignore[assignment]
