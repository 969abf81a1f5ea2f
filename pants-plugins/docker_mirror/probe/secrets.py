"""Secrets the probe handles, and scrubbing them out of everything it prints or writes."""

from __future__ import annotations

import base64
import threading
from typing import Optional

REDACTED = "<redacted>"
# Shorter values would scrub ordinary words out of messages; a real secret is longer.
_MIN_LENGTH = 4


class Secrets:
    def __init__(self) -> None:
        self._values: set = set()
        self._lock = threading.Lock()

    def add(self, value: Optional[str]) -> None:
        if not value or len(value) < _MIN_LENGTH:
            return
        with self._lock:
            self._values.add(value)

    def add_basic(self, username: str, password: str) -> str:
        """Adds the password and the `Basic` value made of both; returns that value."""
        self.add(password)
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.add(encoded)
        self.add(f"{username}:{password}")
        return f"Basic {encoded}"

    def scrub(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def clean(self, text: str, limit: int = 300) -> str:
        """`text` with its secrets scrubbed, then as one line of at most `limit` characters."""
        return one_line(self.scrub(text), limit)


def one_line(text: str, limit: int = 300) -> str:
    """Visible ASCII and spaces only, on one line, at most `limit` characters."""
    cleaned = "".join(c if " " <= c <= "~" else " " for c in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


# One probe per process: the process-wide collection.
SECRETS = Secrets()
