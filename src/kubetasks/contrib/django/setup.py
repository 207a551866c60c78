"""Import this module first in a worker that runs Django tasks: it sets Django up.

    DJANGO_SETTINGS_MODULE=mysite.settings \\
        kubetasks worker --import kubetasks.contrib.django.setup --import myapp.tasks
"""

import django

django.setup()
