"""kubetasks' own ``@task`` functions that use Django's ORM, as a Django project's worker runs
them (``manage.py kubetasks_worker --import tests.django_project.kubetasks_orm``)."""

from __future__ import annotations

from asgiref.sync import sync_to_async

import kubetasks

QUEUE = "orm"


@kubetasks.task(queue_name=QUEUE)
def orm_session() -> int:
    """The PostgreSQL backend pid of this thread's ORM connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    return int(row[0])


@kubetasks.task(queue_name=QUEUE)
async def async_orm_session() -> int:
    """The same, from ``async def`` code, through ``sync_to_async`` as Django asks."""
    return await sync_to_async(orm_session.func)()
