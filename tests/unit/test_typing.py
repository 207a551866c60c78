"""The user's function signature flows through ``@task`` to ``enqueue``: a type checker catches
a wrong argument at the call site, and a ``takes_context`` task is enqueued without its context."""

from __future__ import annotations

from pathlib import Path

from mypy import api

SNIPPET = '''
from kubetasks import TaskContext, task

@task(takes_context=True)
def greet(context: TaskContext, greeting: str) -> str:
    return greeting

@task(queue_name="emails")
def send(user_id: int, *, template: str = "default") -> str:
    return template

greet.enqueue("hi")
send.enqueue(1, template="short")
send.using(priority=5).enqueue(2)
send.enqueue("one")
send.enqueue(1, colour="red")
'''


def test_wrong_arguments_are_type_errors_at_the_call_site(tmp_path: Path) -> None:
    module = tmp_path / "calls.py"
    module.write_text(SNIPPET)
    out, _, status = api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "c"),
                              str(module)])
    errors = [line.split(": error: ")[1] for line in out.splitlines() if ": error: " in line]
    assert status == 1
    assert errors == [
        'Argument 1 to "enqueue" of "Task" has incompatible type "str"; expected "int"  [arg-type]',
        'Unexpected keyword argument "colour" for "enqueue" of "Task"  [call-arg]',
    ]
