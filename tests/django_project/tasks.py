import django

if django.VERSION >= (6, 0):
    from django.tasks import task
else:
    from django_tasks import task


@task(queue_name="emails", priority=5)
def send_welcome(user_id: int, template: str = "default") -> str:
    return f"welcome {user_id} with {template}"


@task(takes_context=True)
def attempt_number(context) -> int:  # type: ignore[no-untyped-def]
    return int(context.attempt)


@task()
def database_session() -> int:
    """The PostgreSQL backend pid of this thread's ORM connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])
