"""Django settings for django-tasks-db under ``bench.compare``."""

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ.get("KT_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))

SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["django_tasks", "django_tasks_db"]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql", "NAME": _url.path.lstrip("/"),
    "USER": _url.username, "HOST": _url.hostname, "PORT": _url.port}}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"level": "WARNING"}}
