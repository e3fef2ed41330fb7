"""`python -m services.conversation`: run the conversation service alone."""

from services.conversation.service import run
from shared import lifecycle

lifecycle.main("conversation", run)
