"""`python -m services.delivery`: run the delivery service."""

from services.delivery.service import run
from shared import lifecycle

if __name__ == "__main__":
    lifecycle.main("delivery", run)
