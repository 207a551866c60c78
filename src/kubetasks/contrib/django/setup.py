"""Import this module first in a worker that runs Django tasks: it sets Django up.

    DJANGO_SETTINGS_MODULE=mysite.settings \\
        kubetasks worker --import kubetasks.contrib.django.setup --import myapp.tasks
"""

import django

django.setup()

from kubetasks.contrib.django.running import close_connections_around_tasks  # noqa: E402

close_connections_around_tasks()
