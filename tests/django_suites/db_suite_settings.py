"""Settings of django-tasks-db's suite (its sdist ships none), with kubetasks as the backend.
Copied into the extracted suite as ``tests/settings.py`` and ``tests/db_worker_test_settings.py``
by ``tests/integration/test_django_suites.py``."""

import os

SECRET_KEY = "kubetasks-django-tasks-db-suite"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages",
    "django_tasks", "django_tasks_db", "kubetasks.contrib.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages"]},
}]
ROOT_URLCONF = "tests.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["KUBETASKS_TEST_DBNAME"],
        "USER": os.environ["KUBETASKS_TEST_USER"],
        "HOST": os.environ["KUBETASKS_TEST_HOST"],
        "PORT": os.environ["KUBETASKS_TEST_PORT"],
        "TEST": {"NAME": os.environ["KUBETASKS_TEST_DBNAME"]},
    }
}
TASKS = {
    "default": {
        "BACKEND": "kubetasks.contrib.django.KubeTasksBackend",
        "OPTIONS": {"DATABASE": "default"},
    }
}
