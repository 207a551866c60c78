#!/usr/bin/env python
"""The alerts project's manage.py, as any Django project has it."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alerts.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
