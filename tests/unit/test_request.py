"""Enqueue validation: every bad value is refused with a message that names it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kubetasks import InvalidTaskError
from kubetasks.request import check_signature, request_template

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def send(user_id: int, *, template: str = "default") -> str:
    return ""


def build(*args: Any, **options: Any) -> Any:
    values: dict[str, Any] = {
        "task_name": "app.send", "func": send, "takes_context": False, "args": args,
        "kwargs": options.pop("kwargs", {}), "queue_name": "default", "priority": 0,
        "max_attempts": 1, "run_after": None, "expected_at": None, "context": {},
        "allowed_queues": None, "now": NOW,
    }
    values.update(options)
    call_args, call_kwargs = values.pop("args"), values.pop("kwargs")
    unique_key = values.pop("unique_key", None)
    return request_template(**values).request(call_args, call_kwargs, unique_key)


def test_a_good_call_is_normalised_as_the_worker_will_see_it() -> None:
    request = build(1, kwargs={"template": "t"}, run_after=timedelta(minutes=5),
                    expected_at=datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=1))),
                    context={"user": "u1", "ids": (1, 2)})
    assert request.args == [1] and request.kwargs == {"template": "t"}
    assert request.run_after == NOW + timedelta(minutes=5)
    assert request.context == {"user": "u1", "ids": [1, 2]}
    assert request.args_json == "[1]"


@pytest.mark.parametrize(("options", "message"), [
    ({"priority": 101}, r"priority 101 is invalid: use an int from -100 to 100"),
    ({"priority": True}, r"priority True is invalid"),
    ({"priority": 1.5}, r"priority 1.5 is invalid"),
    ({"queue_name": "mail", "allowed_queues": frozenset({"emails"})},
     r"queue_name 'mail' is not one of the allowed queues \['emails'\]"),
    ({"max_attempts": 0}, r"max_attempts 0 is invalid: use an int from 1 to"),
    ({"run_after": datetime(2026, 2, 1)}, r"run_after 2026-02-01T00:00:00 is a naive datetime"),
    ({"expected_at": datetime(2026, 2, 1)}, r"expected_at 2026-02-01T00:00:00 is a naive datetime"),
    ({"run_after": timedelta(seconds=-1)}, r"run_after .* is a negative delay"),
    ({"run_after": "tomorrow"}, r"run_after 'tomorrow' is invalid"),
    ({"run_after": timedelta(hours=2), "expected_at": timedelta(hours=1)},
     r"expected_at 2026-01-01T13:00:00\+00:00 is before run_after 2026-01-01T14:00:00\+00:00"),
    ({"expected_at": NOW - timedelta(seconds=1)}, r"expected_at .* is before now"),
    ({"context": {"blob": "x" * 10_000}}, r"context of task app.send is \d+ bytes"),
    ({"context": {"when": NOW}}, r"context\['when'\] is datetime\.datetime"),
])
def test_bad_options_name_the_value(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        build(1, **options)


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((object(),), {}, r"args\[0\] is <object object at .*> of type builtins.object, which is not JSON"),
    ((1,), {"template": {1: "a"}}, r"kwargs\['template'\] has key 1 of type int"),
    ((float("nan"),), {}, r"args\[0\] is nan, which JSON cannot represent"),
    ((), {}, r"arguments do not match task app.send\(user_id: .*missing a required argument"),
    ((1,), {"colour": "red"}, r"unexpected keyword argument 'colour'"),
])
def test_bad_arguments_name_the_value(args: tuple[Any, ...], kwargs: dict[str, Any],
                                      message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        build(*args, kwargs=kwargs)


def test_takes_context_reserves_the_first_parameter() -> None:
    def with_context(context: object, greeting: str) -> None: ...

    build("hi", func=with_context, takes_context=True)
    with pytest.raises(InvalidTaskError, match="missing a required argument: 'greeting'"):
        build(func=with_context, takes_context=True)


def test_a_call_shape_that_bound_before_lets_no_wrong_call_through() -> None:
    def send(user_id: int, subject: str = "hi") -> None: ...

    for _ in range(2):  # the second time from what the first remembered
        check_signature(send, "send", [1], {"subject": "x"}, False)
    with pytest.raises(InvalidTaskError, match="too many positional"):
        check_signature(send, "send", [1, "x", 3], {}, False)
    with pytest.raises(InvalidTaskError, match="unexpected keyword argument 'subjekt'"):
        check_signature(send, "send", [1], {"subjekt": "x"}, False)
    with pytest.raises(InvalidTaskError, match="multiple values for argument 'subject'"):
        check_signature(send, "send", [1], {"subject": "x"}, True)  # the context takes a place
