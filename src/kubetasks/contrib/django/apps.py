"""The ``kubetasks.contrib.django`` app: add it to ``INSTALLED_APPS`` for the schema through
``manage.py migrate``, the ``kubetasks_worker`` and ``kubetasks_prune`` commands, and the admin
view of tasks. The backend itself works without it."""

from __future__ import annotations

from django.apps import AppConfig


class KubeTasksConfig(AppConfig):  # type: ignore[misc]
    name = "kubetasks.contrib.django"
    # The default label would be "django", the last part of the module path.
    label = "kubetasks"
    verbose_name = "Tasks (kubetasks)"
    default_auto_field = "django.db.models.BigAutoField"
