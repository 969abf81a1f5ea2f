"""When to try a registry request again, and how long to wait first (backoff with jitter, at least
the registry's `Retry-After`, up to a bound)."""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# A Retry-After longer than a day is treated as a day: it is reported, never waited for.
_MAX_REPORTED_RETRY_AFTER = 86400.0
# ASCII digits only: `str.isdigit` also accepts `²` and other digits `float` refuses.
_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)
_MAX_DATE_LENGTH = 64


def parse_retry_after(value: Optional[str], *, now: Callable[[], float] = time.time) -> Optional[float]:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP date; None when
    absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        # Compared as text past 6 digits: 4,000 digits are neither a float nor (3.11+) an int.
        return _MAX_REPORTED_RETRY_AFTER if len(value) > 6 else min(float(value), _MAX_REPORTED_RETRY_AFTER)
    if len(value) > _MAX_DATE_LENGTH:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now()), _MAX_REPORTED_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    max_retry_after_seconds: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    random: Callable[[], float] = field(default=random.random, compare=False)

    def backoff(self, failed_attempts: int) -> float:
        """The wait after the `failed_attempts`-th failure: 0.5 s, 1 s, 2 s... up to
        `max_delay`, the upper half of each random."""
        delay = min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))
        return delay / 2 + self.random() * delay / 2

    def delay(self, failed_attempts: int, retry_after: Optional[float]) -> Optional[float]:
        """How long to wait before the next attempt; None when there is none: attempts are
        used up, or the registry asks for a wait beyond `max_retry_after_seconds`."""
        if failed_attempts >= self.attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after_seconds:
            return None
        backoff = self.backoff(failed_attempts)
        return backoff if retry_after is None else max(retry_after, backoff)
