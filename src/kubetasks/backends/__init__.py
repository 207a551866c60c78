"""Where enqueued tasks go: PostgreSQL for real use, Immediate and Dummy without a database."""

from kubetasks.backends.base import Backend
from kubetasks.backends.dummy import DummyBackend
from kubetasks.backends.immediate import ImmediateBackend
from kubetasks.backends.postgres import PostgresBackend

__all__ = ["Backend", "DummyBackend", "ImmediateBackend", "PostgresBackend"]
