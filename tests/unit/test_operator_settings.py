"""The operator's configuration, read once from the environment."""

from __future__ import annotations

import pytest

from kubetasks.exceptions import ConfigurationError
from kubetasks_operator.settings import OperatorSettings


def test_defaults_watch_every_namespace_and_listen() -> None:
    settings = OperatorSettings.from_env({})
    assert (settings.namespaces, settings.listen) == ((), True)
    assert (settings.liveness_port, settings.metrics_port, settings.log_level) == (8080, 9090, "INFO")


@pytest.mark.parametrize("text", ["off", "false", "0", "no", "OFF"])
def test_listen_off_means_off_as_it_does_for_the_worker(text: str) -> None:
    assert OperatorSettings.from_env({"KUBETASKS_OPERATOR_LISTEN": text}).listen is False


def test_namespaces_are_a_comma_separated_list() -> None:
    settings = OperatorSettings.from_env({"KUBETASKS_NAMESPACES": "a, b,"})
    assert settings.namespaces == ("a", "b")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("KUBETASKS_OPERATOR_LISTEN", "maybe", "KUBETASKS_OPERATOR_LISTEN='maybe' is invalid: use true or false"),
    ("KUBETASKS_METRICS_PORT", "http", "KUBETASKS_METRICS_PORT='http' is invalid: use a port"),
])
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        OperatorSettings.from_env({variable: value})
