"""Leader election between operator replicas: the settings that turn it on, and the priority
that makes the older replica lead."""

from __future__ import annotations

import pytest

from kubetasks.exceptions import ConfigurationError
from kubetasks_operator.peering import TIE_BREAK, priority
from kubetasks_operator.settings import OperatorSettings

NOW_NS = 1_795_000_000_000_000_000  # 2026-11-18


def test_no_peering_by_default_one_replica_elects_nothing() -> None:
    settings = OperatorSettings.from_env({})
    assert (settings.peering, settings.peering_lifetime) == ("", 30)


def test_peering_name_and_lifetime_come_from_the_environment() -> None:
    settings = OperatorSettings.from_env({"KUBETASKS_PEERING": "kt-kubetasks-operator",
                                          "KUBETASKS_PEERING_LIFETIME": "15"})
    assert (settings.peering, settings.peering_lifetime) == ("kt-kubetasks-operator", 15)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("KUBETASKS_PEERING", "Kube_Tasks",
     "KUBETASKS_PEERING='Kube_Tasks' is invalid: use a Kubernetes object name"),
    ("KUBETASKS_PEERING_LIFETIME", "5",
     "KUBETASKS_PEERING_LIFETIME='5' is invalid: use whole seconds from 10 to 600"),
    ("KUBETASKS_PEERING_LIFETIME", "30s", "KUBETASKS_PEERING_LIFETIME='30s' is invalid"),
])
def test_a_bad_peering_value_is_refused_naming_it(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        OperatorSettings.from_env({variable: value})


def test_the_older_replica_has_the_higher_priority_whatever_the_tie_break() -> None:
    older = priority(NOW_NS, tie_break=0)
    younger = priority(NOW_NS + 1_000_000, tie_break=TIE_BREAK - 1)  # one millisecond later
    assert older > younger


def test_replicas_started_in_the_same_millisecond_differ_by_their_tie_break() -> None:
    assert priority(NOW_NS, tie_break=1) != priority(NOW_NS + 999_999, tie_break=2)


def test_priorities_stay_exact_in_json_for_a_century() -> None:
    assert 0 < priority(0, tie_break=TIE_BREAK - 1) < 2**53
    assert priority(NOW_NS + 80 * 365 * 86400 * 10**9) > 0
