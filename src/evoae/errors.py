"""The one exception type for user mistakes.

Anything a user can get wrong (a bad name, a missing file, a corrupt dataset, an
inconsistent resume) raises :class:`EvoaeError` with a one-line message that says
what is wrong and how to fix it. The CLI prints it as ``evoae: error: ...`` and exits
with status 2; library callers can catch it like any ``ValueError``.
"""

from __future__ import annotations


class EvoaeError(ValueError):
    """A user-facing error: bad input, bad configuration or bad files."""
