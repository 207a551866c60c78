"""Django's own tasks test suites, taken from the packages' sdists at test time and run against
``KubeTasksBackend`` with a real ``kubetasks worker`` (see ``docs/django.md``)."""
