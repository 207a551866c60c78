from __future__ import annotations

import json
import logging

from kubetasks.logs import JsonFormatter, TextFormatter


class Settings:
    def __repr__(self) -> str:
        return "Settings(" + "x" * 5000 + ")"


def record(**extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "kubetasks.worker", "levelname": "INFO",
                                  "levelno": logging.INFO, "msg": "task %s done", "args": (7,)})
    made.__dict__.update(extra)
    return made


def test_json_lines_carry_plain_extra_fields_and_drop_objects() -> None:
    line = JsonFormatter().format(record(task_id=7, queue="emails", settings=Settings()))
    entry = json.loads(line)
    assert entry["message"] == "task 7 done"
    assert (entry["level"], entry["logger"]) == ("info", "kubetasks.worker")
    assert (entry["task_id"], entry["queue"]) == (7, "emails")
    assert "settings" not in entry and len(line) < 400


def test_text_lines_read_on_a_terminal() -> None:
    line = TextFormatter().format(record(task_id=7, settings=Settings()))
    assert line.endswith("INFO    task 7 done  [task_id=7]")
