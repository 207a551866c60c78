"""The kubetasks operator: ``kopf run -m kubetasks_operator`` or ``kubetasks-operator``.

Importing the package registers its kopf handlers.
"""

from kubetasks_operator import handlers

__all__ = ["handlers"]
