"""``manage.py kubetasks_worker`` connects with Django's own connection parameters: the libpq
string made from a DATABASES entry must read back as exactly those values, whatever the
password holds. (Django is configured in a child interpreter: settings are per process.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import json, django
from django.conf import settings
settings.configure(DATABASES={"default": {
    "ENGINE": "django.db.backends.postgresql", "NAME": "app db", "USER": "o'brien",
    "PASSWORD": "p'a\\\\ss w=rd", "HOST": "db.example.org", "PORT": "6432",
    "OPTIONS": {"sslmode": "require", "application_name": "alerts"}},
    "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
django.setup()
from psycopg.conninfo import conninfo_to_dict
from kubetasks.contrib.django.database import conninfo
print(json.dumps(conninfo_to_dict(conninfo("default"))))
for alias in ("other", "missing"):
    try:
        conninfo(alias)
    except Exception as error:
        print(type(error).__name__, error)
"""


def test_a_databases_entry_becomes_the_same_libpq_parameters() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, text=True,
                          capture_output=True, timeout=60, check=True)
    first, other, missing = done.stdout.splitlines()
    assert json.loads(first) == {
        "dbname": "app db", "user": "o'brien", "password": "p'a\\ss w=rd",
        "host": "db.example.org", "port": "6432", "sslmode": "require",
        "application_name": "alerts", "client_encoding": "UTF8"}
    assert other == ("ConfigurationError DATABASES['other'] is sqlite: kubetasks needs "
                     "PostgreSQL")
    assert missing.startswith("ConfigurationError OPTIONS.DATABASE 'missing' is not in "
                              "DATABASES (default, other")
