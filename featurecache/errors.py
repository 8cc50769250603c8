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


def reason(exc: BaseException, limit: int = 100) -> str:
    """A short, one-line cause for an error message ("[Errno -2] Name or service not known")."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.rsplit(" -- ", 1)[-1]  # Keras' "URL fetch failure on URL: None -- <cause>"
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


class SettingError(UserError):
    """A setting with a wrong value, or settings that do not go together. `setting` names the one at fault
    as a Python keyword ("test_fraction"); the message writes settings as `name=value` (`test_fraction=0.5`,
    `force=True`), which a command line rewrites into its flags (`--test-fraction 0.5`, `--force`)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting
