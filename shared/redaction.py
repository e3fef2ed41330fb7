"""Secret values never reach a user or a log line (DESIGN §11).

One rule for both: every configured secret this process resolved is replaced by `***` in each
log record (`shared.logging`) and in each output published to a chat (`shared.bus.publish`).
Values shorter than MIN_CHARS are left alone: they would mask ordinary words.
"""

from collections.abc import Iterable, Sequence

import msgspec

MASK = "***"
MIN_CHARS = 6


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret of at least MIN_CHARS replaced by `***`."""
    for secret in secrets:
        if len(secret) >= MIN_CHARS and secret in text:
            text = text.replace(secret, MASK)
    return text


def json_forms(secrets: Iterable[str]) -> tuple[bytes, ...]:
    """The secrets as they appear inside a JSON string, for scrubbing encoded messages."""
    return tuple(msgspec.json.encode(s)[1:-1] for s in secrets if len(s) >= MIN_CHARS)


def scrub_json(payload: bytes, forms: Sequence[bytes]) -> bytes:
    """An encoded message with every secret (in `json_forms`) replaced by `***`."""
    for form in forms:
        if form in payload:
            payload = payload.replace(form, MASK.encode())
    return payload
