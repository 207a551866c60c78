"""An argus-like Django project (incidents, notifications sent by background tasks), kept in
two settings: ``alerts.settings_tasks_db`` as it ran on django-tasks-db, and ``alerts.settings``
on kubetasks, which differ only in ``TASKS`` and ``INSTALLED_APPS``."""
