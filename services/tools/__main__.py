"""`python -m services.tools`: run one tool runner of the `local` pool."""

from shared import lean_imports

lean_imports.apply()  # before anything imports nats or httpx

from services.tools.service import run  # noqa: E402
from shared import lifecycle  # noqa: E402

if __name__ == "__main__":
    lifecycle.main("tools", run)
