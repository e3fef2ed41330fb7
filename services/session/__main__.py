"""`python -m services.session`: run the session service alone."""

from shared import lean_imports

lean_imports.apply()  # before anything imports nats or httpx

from services.session.service import run  # noqa: E402
from shared import lifecycle  # noqa: E402

if __name__ == "__main__":
    lifecycle.main("session", run)
