"""What `stellaclaw doctor` found: one Finding per check, printed as one line each.

    ✓ bus: nats://127.0.0.1:4222 reachable, logged in as observer, JetStream on
    ! pool local: auto runs commands unconfined: bwrap is not installed — install bubblewrap there
    ✗ model gpt: http://127.0.0.1:9/v1 refused the key (HTTP 401) — fix models.gpt.api_key

A warning (`!`) is something to look at that does not stop Stellaclaw from working; a failure (`✗`)
is something that does, and makes `doctor` exit 1. Both say what to do after the dash.
"""

from typing import Literal

import msgspec

Status = Literal["ok", "warning", "failed"]
MARKS: dict[Status, str] = {"ok": "✓", "warning": "!", "failed": "✗"}


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One check's result: what was checked, what was found, and what to do about it."""

    check: str  # `bus`, `service session`, `model gpt`
    status: Status
    found: str
    fix: str = ""  # what to do (a warning or a failure)

    def line(self) -> str:
        text = f"{MARKS[self.status]} {self.check}: {self.found}"
        return f"{text} — {self.fix}" if self.fix and self.status != "ok" else text


def passed(check: str, found: str) -> Finding:
    return Finding(check=check, status="ok", found=found)


def warned(check: str, found: str, fix: str) -> Finding:
    return Finding(check=check, status="warning", found=found, fix=fix)


def failed(check: str, found: str, fix: str) -> Finding:
    return Finding(check=check, status="failed", found=found, fix=fix)
