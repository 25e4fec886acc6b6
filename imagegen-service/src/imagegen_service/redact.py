"""Keeping the caller's API key out of every message the service writes.

OpenAI's own error messages echo part of a rejected key ("Incorrect API key provided:
sk-proj-****abcd"), and transport errors can quote a header. Everything taken from an upstream
error passes through ``redact`` before it reaches a log line or a status message.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

# Anything shaped like an OpenAI key, whole or masked ("sk-proj-abc", "sk-****wxyz").
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*.]*")
# OpenAI quotes the rejected key after this phrase whatever its shape (gateways' keys differ).
_QUOTED_KEY = re.compile(r"(?i)(api key provided:?\s*)\S+")
# Masked fragments such as "****abcd" that survive without their prefix.
_MASKED = re.compile(r"\*{3,}[A-Za-z0-9_\-]*")
# Shorter pieces of the key than this are too likely to occur by chance to be worth hiding.
_MIN_FRAGMENT = 8


def redact(text: str, secret: str = "") -> str:
    """``text`` without ``secret``, any long piece of it, or anything that looks like a key."""
    if secret:
        text = text.replace(secret, REDACTED)
        if len(secret) > _MIN_FRAGMENT:
            # The ends of a key are what masked echoes keep; hide any long run of it.
            for start in range(len(secret) - _MIN_FRAGMENT + 1):
                fragment = secret[start : start + _MIN_FRAGMENT]
                if fragment in text:
                    text = text.replace(fragment, REDACTED)
    text = _QUOTED_KEY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _KEY_LIKE.sub(REDACTED, text)
    return _MASKED.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A last line of defence on the log handlers: hides anything key-shaped that a library logs.

    It cannot know the key, so it only catches ``sk-...`` shapes and OpenAI's quoted keys; the
    service itself never passes a key to a logger in the first place.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction() -> None:
    """Add ``RedactingFilter`` to every handler of the root logger (call after configuring)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
