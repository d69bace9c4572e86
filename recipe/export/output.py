"""The output folder, written whole or not at all: everything goes to a hidden folder beside it, which is renamed
into place once the export has passed its check, and removed when anything fails."""

from __future__ import annotations

import contextlib
import os
import shutil

from recipe.export.errors import ExportError
from recipe.folders import hidden_staging_folder, publish_folder


def check_output_dir(output_dir: str) -> None:
    """Refuse an `output_dir` that holds files (an export never mixes with, or overwrites, what is there).

    Raises:
        `ExportError` naming the folder, or the file that stands where the folder should be.
    """
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ExportError(f"--output_dir {output_dir} is not empty: choose a new folder (an export never overwrites)")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ExportError(f"--output_dir {output_dir} is a file, not a folder")


@contextlib.contextmanager
def staging_folder(output_dir: str):
    """A new hidden folder beside `output_dir` to write into; removed when the block fails or when `publish` was not
    called (then nothing of the export is left)."""
    staging = hidden_staging_folder(output_dir)
    try:
        yield staging
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def publish(staging: str, output_dir: str) -> None:
    """Move the finished `staging` folder to `output_dir` (same file system: one rename)."""
    check_output_dir(output_dir)  # again: another process may have written there meanwhile
    publish_folder(staging, output_dir)
