"""`python -m services.ingress_telegram`: run the Telegram ingress alone."""

from services.ingress_telegram.service import run
from shared import lifecycle

lifecycle.main("ingress_telegram", run)
