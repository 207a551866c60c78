"""Durations as people write them, read by one function everywhere (CLI, worker, operator)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kubetasks.parsing import format_duration, parse_duration


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)),
    ("15m", timedelta(minutes=15)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("2d12h", timedelta(days=2, hours=12)),
    ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ("1.5h", timedelta(hours=1, minutes=30)),
    ("7d", timedelta(days=7)),
    ("90", timedelta(seconds=90)),
    ("0.5", timedelta(seconds=0.5)),
    ("0", timedelta(0)),
    ("-5m", timedelta(minutes=-5)),
    (" 15m ", timedelta(minutes=15)),
])
def test_durations_people_write(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "a week", "1 h", "1h 30m", "h", "1w", "1e3s", "inf", "nan",
                                  "1H", "--5m", "1.h", "m30"])
def test_bad_input_is_refused_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"duration {text!r} is invalid: use e.g. 90s, 15m, "
                                          "1h30m or 2d12h"):
        parse_duration(text)


def test_a_duration_too_long_for_any_clock_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"duration '9{20}d' is too long"):
        parse_duration("9" * 20 + "d")


@pytest.mark.parametrize(("value", "text"), [
    (timedelta(0), "0s"), (timedelta(seconds=59), "59s"), (timedelta(hours=1, minutes=30), "1h30m"),
    (timedelta(days=2, hours=12), "2d12h"), (timedelta(days=1, seconds=1), "1d1s"),
    (timedelta(minutes=-5), "-5m"),
])
def test_formatting_reads_back_as_the_same_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value
