"""The one exception every part of the command line turns into a clear message.

It lives here, at the top of the governor package and apart from the service, so
that a client command (``hpilot status``) raises it without importing the service.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: printed as one clear line, exit status 2, no traceback."""
