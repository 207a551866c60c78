"""Settings under which Django's own tasks suite runs against kubetasks (``run_suite.py``)."""

import os

SECRET_KEY = "kubetasks-django-suite"
USE_TZ = True
INSTALLED_APPS: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["KUBETASKS_TEST_DBNAME"],
        "USER": os.environ["KUBETASKS_TEST_USER"],
        "HOST": os.environ["KUBETASKS_TEST_HOST"],
        "PORT": os.environ["KUBETASKS_TEST_PORT"],
        # The suite's TransactionTestCases run in the database the worker serves, as it is.
        "TEST": {"NAME": os.environ["KUBETASKS_TEST_DBNAME"]},
    }
}
# What the worker and the suite's task module see by default; the suite's tests override it.
TASKS = {
    "default": {
        "BACKEND": "tests.django_suites.backends.WaitingBackend",
        "QUEUES": [],
    }
}
