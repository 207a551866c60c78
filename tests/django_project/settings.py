"""A minimal Django project that uses kubetasks as its task backend (for the tests)."""

import os

import django

SECRET_KEY = "kubetasks-tests"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes"]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["KUBETASKS_TEST_DBNAME"],
        "USER": os.environ["KUBETASKS_TEST_USER"],
        "HOST": os.environ["KUBETASKS_TEST_HOST"],
        "PORT": os.environ["KUBETASKS_TEST_PORT"],
    }
}

TASKS = {
    "default": {
        "BACKEND": "kubetasks.contrib.django.KubeTasksBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"DATABASE": "default", "MAX_ATTEMPTS": 2},
    }
}
