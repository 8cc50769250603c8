"""The command layer's shared part: click classes that turn the library's errors into one line.

Every command is built with `cls=Command` (a group with `cls=Group`). A `UserError` the library
raises becomes click's one "Error: ..." line and its exit status, never a traceback. In its
message each setting written in Python's terms (`train_size=5000`,
`pooling='x'`, `force=True`, or a bare name in backquotes) becomes the flag that sets it
(`--train-size 5000`, `--pooling x`, `--force`): the flag comes from the command's own options (their Python names
and their flags' names), then from the command's `flags={setting: flag}`, else it is the
setting's name with dashes.
"""

from __future__ import annotations

import contextlib
import re

import click

from featurecache.errors import UserError

# name=value: a quoted Python repr or a plain token; the name not inside a word, path, URL query or flag
SETTING_VALUE = re.compile(r"(?<![\w.\-/?&:=])([A-Za-z][A-Za-z0-9_]*)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;()]+)")
SETTING_NAME = re.compile(r"`([A-Za-z][A-Za-z0-9_]*)`")  # a setting named without a value: `train_size`


def flag_names(command: click.Command, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Setting name -> flag, from the command's options (`--train-size` and its Python name)."""
    flags: dict[str, str] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            longs = [o for o in param.opts if o.startswith("--")] or param.opts
            flags[longs[0].lstrip("-").replace("-", "_")] = longs[0]
            flags[param.name] = longs[0]
        elif isinstance(param, click.Argument):
            flags[param.name] = param.human_readable_name
    return {**flags, **(extra or {})}


def flagged(message: str, flags: dict[str, str]) -> str:
    """`train_size=5000 is more ...` -> `--train-size 5000 is more ...`; `force=True` -> `--force`;
    a known setting in backquotes (`train_size`) -> its flag."""

    def one(match: re.Match) -> str:
        name, value = match.groups()
        if name not in flags and not name.islower():
            return match[0]   # MLFLOW_ALLOW_FILE_STORE=true: an environment variable, not a setting
        flag = flags.get(name, "--" + name.replace("_", "-"))
        if value == "True":
            return flag
        if value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        return f"{flag} {value}"

    message = SETTING_VALUE.sub(one, message)
    return SETTING_NAME.sub(lambda m: flags.get(m[1], m[0]), message)


def as_click(error: UserError, command: click.Command | None) -> click.ClickException:
    """The one-line click error for a library error, naming flags where it names settings."""
    message = error.message
    if command is not None:
        message = flagged(message, flag_names(command, getattr(command, "flags", None)))
    out = click.ClickException(message)
    out.exit_code = error.exit_code
    return out


@contextlib.contextmanager
def one_line(command: click.Command | None = None):
    """Inside: a UserError leaves as click's one-line error (see `as_click`)."""
    try:
        yield
    except UserError as e:
        raise as_click(e, command) from None


class Command(click.Command):
    """A click command whose library errors print as one line naming the flag.

    `flags={setting: flag}` names flags for settings the library calls otherwise."""

    def __init__(self, *args, flags: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.flags = dict(flags or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with one_line(self):  # option callbacks may call the library's checks
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with one_line(self):
            return super().invoke(ctx)


class Group(click.Group):
    """A click group whose commands are `Command`s, and whose own errors print the same way."""

    command_class = Command

    def __init__(self, *args, flags: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.flags = dict(flags or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with one_line(self):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        with one_line(self):
            return super().invoke(ctx)
