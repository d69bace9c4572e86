"""How the recipe's commands fail: what a user can cause or meet is one line and a documented exit status, a bug keeps
its traceback.

`InputError` is the base of every error a user can cause or meet: bad input (a wrong flag or value, data that cannot
be used, a damaged checkpoint, a model that cannot be exported, a missing optional package), a resource the run
cannot have (`UnavailableError`: no room, no permission, the Hub unreachable, the output folder held by another run)
and a peer process of the run gone (`PeerFailureError`). Each such class also keeps the base its callers catch
(`DataError` is a `ValueError`, `CheckpointLoadError` a `RuntimeError`, ...). `run_command` runs the `main` of
`run_finetune.py`, `python -m recipe.compare`, `python -m recipe.piper` and `python -m recipe.export`, and turns an
`InputError` into one line and its class's exit status (`EXIT_STATUSES`); any other exception is a bug and
propagates with its traceback. An `OSError` that says the disk is full or a path may not be written is the
environment's, not a bug: it is reported the same way, as `UnavailableError`.

A leaf: it imports nothing of the recipe, so that every module can import it.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable

# Set to 1 to see the traceback of an input error as well (its one line still follows, and the status is unchanged)
DEBUG_VARIABLE = "RECIPE_DEBUG"
INPUT_ERROR_STATUS = 2
UNAVAILABLE_STATUS = 3
PEER_FAILURE_STATUS = 4
# every status a command can exit with, for `--help` and the README (0, 1, 128 + N are the commands' own)
EXIT_STATUSES = {
    INPUT_ERROR_STATUS: "bad input: a flag, a value, a file, the data, a checkpoint, a missing optional package",
    UNAVAILABLE_STATUS: "a resource the command needs is unavailable: no room, no permission, the Hub unreachable, "
    "the output folder held by another run",
    PEER_FAILURE_STATUS: "another process of the same run failed or became unreachable",
}
# the OSErrors that are the environment's (a full disk, a read-only or forbidden path), not the recipe's
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


class InputError(Exception):
    """An error caused by the input or the environment, not by the recipe: its message says what happened and what to
    change. A command prints it as one line and exits with `status` (`run_command`)."""

    status = INPUT_ERROR_STATUS


class UnavailableError(InputError):
    """A resource the command needs is unavailable: no room on a disk, no permission on a path, the Hugging Face Hub
    unreachable, the output folder held by another run. The message names the resource and the ways out."""

    status = UNAVAILABLE_STATUS


class PeerFailureError(InputError, RuntimeError):
    """Another process of the same run (`accelerate launch`) died, hung or became unreachable; the message says where
    to resume from."""

    status = PEER_FAILURE_STATUS


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
        f"one line '{prog}: error: MESSAGE' with exit status {INPUT_ERROR_STATUS}; an unavailable resource (no room, "
        f"no permission, the Hub unreachable, the output folder in use) with {UNAVAILABLE_STATUS}; a failed peer "
        f"process of the run with {PEER_FAILURE_STATUS}. Set {DEBUG_VARIABLE}=1 to also see the traceback."
    )


def environment_error(error: OSError) -> UnavailableError | None:
    """The `UnavailableError` to report for an `OSError` that is the environment's (a full disk or quota, a path that
    may not be written); `None` for any other, which stays a bug."""
    if error.errno not in _ENVIRONMENT_ERRNOS:
        return None
    path = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None) or "a file"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space there, or give a folder on another disk (--output_dir, --cache_dir), and run again"
    else:
        advice = (
            "check the permissions of that path, or give another folder (--output_dir, --cache_dir), and run again"
        )
    return UnavailableError(f"{path}: {error.strerror or os.strerror(error.errno)}; {advice}")


def run_command(prog: str, command: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's `command(argv)` and return its exit status.

    - the status `command` returns (`None` counts as 0);
    - the error's `status` (2 for bad input, 3 for an unavailable resource, 4 for a failed peer process:
      `EXIT_STATUSES`) for an `InputError`, printed as one line `PROG: error: MESSAGE` on stderr, without a
      traceback, by every process that meets it (under several processes, each one's error is its own). An `OSError`
      of a full disk or a forbidden path counts as an `UnavailableError` (`environment_error`). With
      `RECIPE_DEBUG=1` in the environment the traceback is printed first;
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
        return _report(prog, error)
    except OSError as error:
        reported = environment_error(error)
        if reported is None:
            raise
        return _report(prog, reported)
    return 0 if status is None else status


def _report(prog: str, error: InputError) -> int:
    if os.environ.get(DEBUG_VARIABLE) == "1":
        traceback.print_exc()
    # the classes' messages are one line; a message with line breaks (e.g. quoting a file) is kept on one too
    message = " ".join(str(error).split("\n"))
    # one write of the whole line: under several processes sharing a pipe, print()'s separate writes of the text
    # and its newline let two processes' lines run into one
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    return error.status
