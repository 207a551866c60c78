"""Tasks of ``bench/render_dashboard.py``'s worker pods: quick mail sends, a flaky webhook that
is retried and sometimes fails for good, and slow reports with deadlines."""

from __future__ import annotations

import random
import time

from kubetasks import task


@task(queue_name="emails")
def send_email(n: int) -> int:
    time.sleep(random.uniform(0.02, 0.15))
    return n


class WebhookRefused(Exception):
    pass


@task(queue_name="emails", max_attempts=3, retry_backoff={1: 1, 2: 2})
def call_webhook(n: int) -> int:
    time.sleep(random.uniform(0.05, 0.3))
    if random.random() < 0.3:
        raise WebhookRefused(f"webhook {n} answered 503")
    return n


@task(queue_name="reports")
def build_report(n: int) -> int:
    time.sleep(random.uniform(2.0, 4.0))
    return n


@task(queue_name="imports")
def import_rows(n: int) -> int:
    return n
