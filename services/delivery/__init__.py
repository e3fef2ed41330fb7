"""The delivery service: sends outputs from SC_OUT to the platforms (Telegram)."""
