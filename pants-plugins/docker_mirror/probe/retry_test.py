from __future__ import annotations

import pytest

from docker_mirror.probe.retry import RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    "value, seconds",
    [
        (None, None), ("", None), ("soon", None), ("-5", None), ("120", 120.0), (" 7 ", 7.0),
        ("99999999", 86400.0), ("9" * 5000, 86400.0),
        ("\u00b2", None), ("\u0663", None), ("1e3", None), ("x" * 100_000, None),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),  # an HTTP date, 30 s after "now"
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),  # in the past
    ],
)
def test_parse_retry_after(value: "str | None", seconds: "float | None") -> None:
    assert parse_retry_after(value, now=lambda: 1_700_000_000.0) == seconds


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    low = RetryPolicy(random=lambda: 0.0)
    high = RetryPolicy(random=lambda: 0.999999)
    assert [low.backoff(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert [round(high.backoff(n), 3) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_delay() -> None:
    policy = RetryPolicy(attempts=3, max_retry_after_seconds=60, random=lambda: 0.5)
    assert policy.delay(1, None) == 0.375
    assert policy.delay(1, 10) == 10
    assert policy.delay(2, 0.1) == 0.75  # never shorter than the backoff
    assert policy.delay(1, 60) == 60
    assert policy.delay(1, 61) is None  # beyond the cap: not waited for
    assert policy.delay(3, None) is None  # attempts used up


def test_the_worst_case_wait_is_bounded() -> None:
    policy = RetryPolicy(attempts=4, max_retry_after_seconds=60, random=lambda: 0.999999)
    waits = [policy.delay(n, 60) for n in range(1, 4)]
    assert sum(w for w in waits if w is not None) <= 3 * 60
