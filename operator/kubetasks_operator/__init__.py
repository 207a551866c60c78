"""The kubetasks operator: ``kopf run -m kubetasks_operator`` or ``kubetasks-operator``.

Importing the package registers its kopf handlers. They need the ``operator`` extra
(``pip install 'kubetasks[operator]'``); where it is missing, nothing is registered and
``kubetasks-operator`` says in one line what to install.
"""

from importlib.util import find_spec

OPERATOR_EXTRA = ("kopf", "kubernetes", "pydantic")


def missing_extra() -> list[str]:
    """The packages of the ``operator`` extra that are not installed."""
    missing = []
    for name in OPERATOR_EXTRA:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


if not missing_extra():
    from kubetasks_operator import handlers

    __all__ = ["handlers", "missing_extra"]
