"""How the recipe's commands fail: bad input is one line and exit status 2, a bug keeps its traceback.

`InputError` is the base of every error the user's input causes (a wrong flag or value, data that cannot be used, a
damaged checkpoint, a model that cannot be exported, a missing optional package). Each such class also keeps the
base its callers catch (`DataError` is a `ValueError`, `CheckpointLoadError` a `RuntimeError`, ...). `run_command`
runs the `main` of `run_finetune.py`, `python -m recipe.compare`, `python -m recipe.piper` and `python -m
recipe.export`, and turns an `InputError` into one line and exit status 2; any other exception is a bug and
propagates with its traceback.

A leaf: it imports nothing of the recipe, so that every module can import it.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

# Set to 1 to see the traceback of an input error as well (its one line still follows, and the status is still 2)
DEBUG_VARIABLE = "RECIPE_DEBUG"
INPUT_ERROR_STATUS = 2


class InputError(Exception):
    """An error caused by the input, not by the recipe: its message says what to change. A command prints it as one
    line and exits with status 2 (`run_command`)."""


class ArgumentsError(InputError, ValueError):
    """A mistake in a command's arguments: a mistyped flag or file key, a value of the wrong type or one the command
    refuses."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder named in the arguments does not exist; the message names it and the flag."""


class MissingExtraError(InputError, ImportError):
    """An optional package a feature needs is not installed; the message says which extra installs it."""


class RaisesArgumentsError:
    """Mixin for an `argparse.ArgumentParser` (or `HfArgumentParser`) whose mistakes raise `ArgumentsError` instead of
    printing the usage and exiting, so that `run_command` reports them as one line like any other bad input."""

    def error(self, message: str):
        raise ArgumentsError(message)


def help_epilog(prog: str) -> str:
    """The `--help` epilog of every command (and subcommand): how `run_command` reports bad input as `prog`."""
    return (
        "Bad input (a wrong flag or value, a missing file, unusable data, a missing optional package) is reported as "
        f"one line '{prog}: error: MESSAGE' with exit status {INPUT_ERROR_STATUS}; set {DEBUG_VARIABLE}=1 to also "
        "see its traceback."
    )


def run_command(prog: str, command: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's `command(argv)` and return its exit status.

    - the status `command` returns (`None` counts as 0);
    - 2 for an `InputError`, printed as one line `PROG: error: MESSAGE` on stderr, without a traceback, by every
      process that meets it (under several processes, each one's error is its own). With `RECIPE_DEBUG=1` in the
      environment its traceback is printed first;
    - any other exception is a bug: it propagates with its traceback.

    Args:
        prog (`str`): how the command is typed (`run_finetune.py`, `python -m recipe.compare`), the line's prefix.
        command (`Callable[[list[str]], int | None]`): runs the command on its arguments, returns its exit status.
        argv (`list[str]`, *optional*): the arguments; defaults to `sys.argv[1:]`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        status = command(argv)
    except InputError as error:
        if os.environ.get(DEBUG_VARIABLE) == "1":
            traceback.print_exc()
        # the classes' messages are one line; a message with line breaks (e.g. quoting a file) is kept on one too
        message = " ".join(str(error).split("\n"))
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        return INPUT_ERROR_STATUS
    return 0 if status is None else status
