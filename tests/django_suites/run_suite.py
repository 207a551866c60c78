"""Run a Django test suite (labels on the command line) and write every test's outcome to the
JSON file named by ``--report``: ``{"test id": "passed" | "failed" | "error" | "skipped"}``,
a test with a failed subtest counting as failed.

Environment: ``DJANGO_SETTINGS_MODULE``, ``KUBETASKS_TEST_*`` (the database) and what the
settings and backends read. Started by ``tests/integration/test_django_suites.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import unittest
from pathlib import Path
from typing import Any

import django
from django.test.runner import DiscoverRunner

outcomes: dict[str, str] = {}


class RecordingResult(unittest.TextTestResult):
    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        outcomes.setdefault(test.id(), "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        outcomes[test.id()] = "failed"

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        outcomes[_test_id(test)] = "error"

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        outcomes[test.id()] = "skipped"

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcomes[test.id()] = "failed"


def _test_id(test: Any) -> str:
    """A class-level error (setUpClass) is reported on a stand-in whose id names the class."""
    return test.id() if hasattr(test, "id") else str(test)


class RecordingRunner(DiscoverRunner):  # type: ignore[misc]
    def get_resultclass(self) -> type[unittest.TextTestResult]:
        return RecordingResult


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("labels", nargs="+")
    args = parser.parse_args()
    django.setup()
    runner = RecordingRunner(verbosity=2, keepdb=True, interactive=False)
    failures = runner.run_tests(args.labels)
    args.report.write_text(json.dumps(outcomes, indent=1, sort_keys=True))
    print(f"{len(outcomes)} tests, {failures} failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
