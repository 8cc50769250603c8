"""The project's own exceptions, for mistakes a user can fix; the library raises only these.

    UserError     bad input: the message names the problem and the fix, in one line
    SettingError  a UserError (and a ValueError) about a setting, worded in Python's terms
                  (`train_size=5000 is more than ...`); `.setting` names it

Neither knows about the command line. The command layer (featurecache.command) turns them
into one "Error: ..." line that names the flag (`--train-size 5000 is more than ...`) and
exit status `exit_code`. Anything else that goes wrong is a bug and keeps its traceback.
"""

import re

SETTING = re.compile(r"(?<![\w.\-/])([A-Za-z][A-Za-z0-9_]*)=")  # `train_size=` in a message


class UserError(Exception):
    """Bad input: the message names the problem and the fix, in one line."""

    exit_code = 1

    def __init__(self, message: str):
        self.message = " ".join(str(message).split())  # always one line
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class SettingError(UserError, ValueError):
    """A setting's value is wrong, or settings that do not go together: the message writes settings in
    Python's terms, as `name=value` (`test_fraction=0.5`, `force=True`) or a bare name in backquotes
    (`out`), which a command line rewrites into its flags (`--test-fraction 0.5`, `--force`, `--out`).

    `setting` is the one given, else the first setting the message names."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        named = SETTING.findall(self.message)
        self.setting = setting or (named[0] if named else None)


def reason(exc: BaseException, limit: int = 100) -> str:
    """A short, one-line cause for an error message ("[Errno -2] Name or service not known")."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.rsplit(" -- ", 1)[-1]  # Keras' "URL fetch failure on URL: None -- <cause>"
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."
