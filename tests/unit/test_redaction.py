"""No password, URL with password, or Secret value in a log line: ``redact`` and the
``RedactSecrets`` filter on kubetasks' log handler."""

from __future__ import annotations

import io
import json
import logging

import psycopg
import pytest

from kubetasks.logs import RedactSecrets, TextFormatter, redact, register_secret, setup_logging

HOSTILE = {
    # (secret, text that must never show)
    "postgresql://app:Sup3r%Secret@127.0.0.1:1/app": "Sup3r",   # a raw % the driver quotes
    "postgresql://app:p@ss%zzW0rd@db.invalid/app": "zzW0rd",    # an @ and a % in the password
    "opaque-T0ken-not-a-url": "T0ken",                          # a Secret key that is no URL
    "c2VjcmV0VG9rZW4==": "c2VjcmV0",                            # base64, looks like key=value
    "host=db.invalid password=Hunter2Pass": "Hunter2",
}


def driver_error(conninfo: str) -> str:
    try:
        psycopg.connect(conninfo, connect_timeout=2).close()
    except psycopg.Error as error:
        return str(error)
    raise AssertionError("connected")


@pytest.mark.parametrize(("secret", "shown"), HOSTILE.items())
def test_the_drivers_error_about_a_hostile_url_shows_no_piece_of_it(secret: str, shown: str) -> None:
    register_secret(secret)
    message = f"database unreachable: {driver_error(secret)} (url {secret})"
    assert shown in message  # the driver does quote it
    assert shown not in redact(message)


def test_a_url_keeps_its_host_and_a_resolver_error_names_it() -> None:
    register_secret("postgresql://app:Hunter2Pass@db.invalid/app")
    assert redact("connecting to postgresql://app:Hunter2Pass@db.invalid/app") == \
        "connecting to postgresql://app:***@db.invalid/app"
    message = driver_error("postgresql://app:Hunter2Pass@db.invalid/app")
    assert "db.invalid" in redact(message)


def test_passwords_of_urls_never_registered_are_masked_too() -> None:
    assert redact("dsn=postgresql://u:never-seen@h/db sslpassword=abc password='x y'") == \
        "dsn=postgresql://u:***@h/db sslpassword=*** password=***"


def test_the_filter_masks_message_arguments_exceptions_and_extra_fields() -> None:
    secret = "opaque-Filter-T0ken-value"
    register_secret(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"bad value {secret!r}")
        except ValueError:
            logger.error("cannot use %s", secret, exc_info=True, extra={"url": secret})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "Filter-T0ken" not in text and "ValueError" in text and "cannot use ***" in text


def test_setup_logging_installs_the_filter_on_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    register_secret("postgresql://app:Json%Secret@127.0.0.1:1/app")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", json_lines=True)
        logging.getLogger("psycopg.pool").warning(
            "error connecting in %r: %s", "kubetasks",
            driver_error("postgresql://app:Json%Secret@127.0.0.1:1/app"))
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    line = capsys.readouterr().err.strip()
    assert "Json" not in line and json.loads(line)["message"].startswith("error connecting")


def test_a_short_quoted_value_that_happens_to_be_in_a_password_is_shown() -> None:
    register_secret("postgresql://app:p@ss%zzW0rd@db.invalid/app")
    message = "--max-running '0' is invalid: use a whole number from 1"
    assert redact(message) == message
    assert "zzW0rd" not in redact("invalid percent-encoded token: 'zzW0rd'")
