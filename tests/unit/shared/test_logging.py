"""One structured line per event, context fields from the consumer loop, secrets never shown."""

import io
import logging

import pytest

from shared import logging as service_logging

TOKEN = "123456789:AAE-very-secret-token"


@pytest.fixture(autouse=True)
def restored_logging():
    """setup() configures the process's root logger; give it back to pytest afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_record_carries_the_context_and_never_the_secret():
    out = io.StringIO()
    service_logging.setup("delivery", "info", secrets=[TOKEN], stream=out)
    token_conv = service_logging.conv_var.set("tg_42")
    token_trace = service_logging.trace_var.set("abc123")
    try:
        logging.getLogger("test").warning(
            "POST https://api.telegram.org/bot%s/sendMessage failed", TOKEN, extra={"status": 502}
        )
        try:
            raise RuntimeError(f"connect to /bot{TOKEN}/getMe refused")
        except RuntimeError:
            logging.getLogger("test").exception("call failed")
    finally:
        service_logging.conv_var.reset(token_conv)
        service_logging.trace_var.reset(token_trace)
    text = out.getvalue()
    assert TOKEN not in text
    first = text.splitlines()[0]
    assert "service=delivery conv=tg_42 session=- trace=abc123" in first
    assert first.endswith("POST https://api.telegram.org/bot***/sendMessage failed status=502")
    assert "connect to /bot***/getMe refused" in text


def test_httpx_is_held_at_warning_because_its_info_line_prints_urls():
    service_logging.setup("delivery", "debug", stream=io.StringIO())
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
