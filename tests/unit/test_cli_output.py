"""How the ``kubetasks`` command prints: human times, aligned tables, colour only when asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetasks.commands.output import Table, ago, use_colour

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("moment", "text"), [
    (NOW - timedelta(minutes=3), "3m ago"),
    (NOW - timedelta(minutes=3, seconds=20), "3m20s ago"),
    (NOW - timedelta(days=2, hours=5, minutes=7), "2d5h ago"),
    (NOW - timedelta(seconds=42), "42s ago"),
    (NOW + timedelta(hours=1, minutes=30), "in 1h30m"),
    (NOW, "just now"),
    (None, "-"),
])
def test_times_read_as_how_long_ago(moment: datetime | None, text: str) -> None:
    assert ago(moment, NOW) == text


def test_a_table_aligns_its_columns_under_upper_case_headers() -> None:
    table = Table(["ID", "STATE", "TASK"], [["7", "READY", "app.send"], ["1234", "FAILED", "x"]],
                  colour_column=1)
    assert table.lines(colour=False) == ["ID     STATE    TASK",
                                         "7      READY    app.send",
                                         "1234   FAILED   x"]
    coloured = table.lines(colour=True)
    assert "\x1b[31mFAILED" in coloured[2] and "\x1b[" not in coloured[0]


class Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Stream(tty=True)) and not use_colour(Stream(tty=False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Stream(tty=True))
