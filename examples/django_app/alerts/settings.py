"""The alerts project on kubetasks: ``manage.py migrate`` creates its tables,
``manage.py kubetasks_worker`` runs its tasks, ``manage.py kubetasks_prune`` prunes them.
Compared with ``settings_tasks_db``, only TASKS and INSTALLED_APPS differ."""

from alerts.settings_base import *  # noqa: F403
from alerts.settings_base import COMMON_APPS, TASK_QUEUES

INSTALLED_APPS = [*COMMON_APPS, "kubetasks.contrib.django"]
TASKS = {
    "default": {
        "BACKEND": "kubetasks.contrib.django.KubeTasksBackend",
        "QUEUES": TASK_QUEUES,
        "OPTIONS": {"DATABASE": "default"},
    }
}
