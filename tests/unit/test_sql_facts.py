"""Facts the SQL must spell out where a statement cannot take them as a parameter (an index,
LISTEN, a trigger): every copy says what the one Python definition says."""

from __future__ import annotations

import re
from importlib import resources

from kubetasks.store import CHANNEL, CLAIM_ORDER


def sql_files() -> dict[str, str]:
    folder = resources.files("kubetasks").joinpath("sql")
    files = {"queries.sql": folder.joinpath("queries.sql").read_text(encoding="utf-8")}
    for entry in folder.joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            files[entry.name] = entry.read_text(encoding="utf-8")
    return files


def test_every_claim_order_in_the_sql_is_the_store_s() -> None:
    orders = [re.sub(r"\b\w\.", "", line)  # drop table aliases: "c.priority" -> "priority"
              for text in sql_files().values() for line in text.splitlines()
              if "priority DESC" in line]
    assert len(orders) >= 5  # the claim index, claim_tasks and deadline_work
    assert [line for line in orders if CLAIM_ORDER not in line] == []


def test_every_notify_and_listen_uses_the_store_s_channel() -> None:
    texts = "\n".join(sql_files().values())
    channels = re.findall(r"pg_notify\('(\w+)'", texts) + re.findall(r"^LISTEN (\w+)", texts, re.M)
    assert len(channels) >= 2  # the enqueue trigger and listen_for_tasks
    assert set(channels) == {CHANNEL}
