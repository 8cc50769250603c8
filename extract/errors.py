"""The one exception type for mistakes a user can fix.

It is a `click.ClickException`, so the command line prints its message on one
line ("Error: ...") and exits 1 without a traceback. Anything else that goes
wrong is a bug and keeps its traceback.
"""

import click


class UserError(click.ClickException):
    """Bad input: the message names the problem and the fix, in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # always one line
