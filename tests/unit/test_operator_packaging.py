"""``kubetasks-operator`` where the ``operator`` extra is not installed."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_KOPF = """
import importlib.abc, sys

class HideKopf(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kopf" or name.startswith("kopf."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideKopf())
from kubetasks_operator.__main__ import main
sys.exit(main())
"""


def test_the_operator_command_names_the_extra_to_install_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_KOPF], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "kubetasks-operator: kopf not installed; install the operator with "
        "pip install 'kubetasks[operator]'"]
