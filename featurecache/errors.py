"""The one exception type for mistakes a user can fix.

It is a `click.ClickException`, so the command line prints its message on one
line ("Error: ...") and exits 1 without a traceback. Anything else that goes
wrong is a bug and keeps its traceback.
"""

import re

import click

SETTING = re.compile(r"(?<![\w.\-/])([A-Za-z][A-Za-z0-9_]*)=")  # `train_size=` in a message


class UserError(click.ClickException):
    """Bad input: the message names the problem and the fix, in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # always one line


def reason(exc: BaseException, limit: int = 100) -> str:
    """A short, one-line cause for an error message ("[Errno -2] Name or service not known")."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.rsplit(" -- ", 1)[-1]  # Keras' "URL fetch failure on URL: None -- <cause>"
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


class SettingError(UserError, ValueError):
    """A setting's value is wrong, or settings that do not go together: the message writes settings in
    Python's terms, as `name=value` (`test_fraction=0.5`, `force=True`) or a bare name in backquotes
    (`out`), which a command line rewrites into its flags (`--test-fraction 0.5`, `--force`, `--out`).

    `setting` is the one given, else the first setting the message names."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        named = SETTING.findall(self.message)
        self.setting = setting or (named[0] if named else None)
