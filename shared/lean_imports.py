"""Keep aiohttp out of the processes that never use it.

nats-py imports aiohttp for its websocket transport whenever aiohttp is installed (aiogram brings
it). Stellaclaw connects over `nats://` only, and aiohttp costs about 10 MB of resident memory in
every process, so the services other than the Telegram ingress call `skip_aiohttp()` first thing.
"""

import sys


def skip_aiohttp() -> None:
    """Make `import aiohttp` fail in this process (nats-py then goes without websockets)."""
    # A None entry is how the import system records a module that must not be imported.
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
