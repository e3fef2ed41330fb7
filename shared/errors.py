"""The four errors, sorted by whose fault they are; the class decides what happens next.

    error               whose fault          what happens
    ------------------  -------------------  ------------------------------------------------
    InputError          the sender's         answer the sender if possible, then term() it
    ModelBehaviorError  the model's          a ToolFailed the model reads on its next call
    ConfigError         the operator's       refuse to start: one precise line, exit code 2
    TransientError      the infrastructure's nak(delay=retry_after_s): try again later

A service's own exceptions subclass one of these; `shared.bus.consume` maps them to ack/nak/term.
"""


class InputError(Exception):
    """The sender sent something that can never be handled; redelivery cannot fix it."""


class ModelBehaviorError(Exception):
    """The model asked for something invalid; it is told so and may try again."""


class ConfigError(Exception):
    """The operator's config is wrong. The text is the whole one-line message for stderr."""


class TransientError(Exception):
    """The infrastructure failed for now; the work is retried after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
