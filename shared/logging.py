"""Logging: one structured line per event, with `service`, `conv`, `session` and `trace`.

The consumer loop sets the context fields from the `Sc-Conv`/`Sc-Trace` headers; the rest goes in
`extra=`. Message content is never logged at INFO. httpx is held at WARNING and every record is
scrubbed of the secrets handed to `setup` (`shared.redaction`; Telegram URLs carry the bot token).
"""

import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TextIO

from shared import redaction

conv_var: ContextVar[str] = ContextVar("conv", default="-")
session_var: ContextVar[str] = ContextVar("session", default="-")
trace_var: ContextVar[str] = ContextVar("trace", default="-")

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_FORMAT = "%(asctime)s %(levelname)s service=%(service)s conv=%(conv)s session=%(session)s "
_FORMAT += "trace=%(trace)s %(name)s: %(message)s"


class _ContextFilter(logging.Filter):
    """Adds the context fields and redacts secrets from the final message."""

    def __init__(self, service: str, secrets: Iterable[str]) -> None:
        super().__init__()
        self.service = service
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.conv = conv_var.get()
        record.session = session_var.get()
        record.trace = trace_var.get()
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        message = record.getMessage()
        fields = " ".join(
            f"{k}={v}"
            for k, v in extras.items()
            if k not in {"service", "conv", "session", "trace"}
        )
        text = f"{message} {fields}" if fields else message
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        text = redaction.scrub(text, self.secrets)
        if record.exc_text:
            record.exc_text = redaction.scrub(record.exc_text, self.secrets)
        record.msg, record.args = text, None
        return True


def setup(
    service: str, level: str = "info", secrets: Iterable[str] = (), stream: TextIO = sys.stderr
) -> None:
    """Configure the root logger for one service process."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_ContextFilter(service, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # websockets logs every handshake header at DEBUG, the codex bearer token included
    for noisy in ("httpx", "httpcore", "aiohttp.access", "asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
