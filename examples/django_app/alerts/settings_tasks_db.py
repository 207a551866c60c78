"""The alerts project on django-tasks-db, as it was: ``manage.py db_worker`` runs its tasks and
``manage.py prune_db_task_results`` prunes them."""

from alerts.settings_base import *  # noqa: F403
from alerts.settings_base import COMMON_APPS, TASK_QUEUES

INSTALLED_APPS = [*COMMON_APPS, "django_tasks_db"]
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": TASK_QUEUES,
    }
}
