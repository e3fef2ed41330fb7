"""The conversation service: routing, commands and per-conversation state."""
