"""`python -m services.session`: run the session service alone."""

from services.session.service import run
from shared import lifecycle

lifecycle.main("session", run)
