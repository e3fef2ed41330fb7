"""`python -m services.tools`: run one tool runner of the `local` pool."""

from services.tools.service import run
from shared import lifecycle

if __name__ == "__main__":
    lifecycle.main("tools", run)
