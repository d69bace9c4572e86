"""Folders written whole or not at all: the one way the recipe writes a checkpoint, a model folder, an export or the
feature cache.

Everything goes into a staging folder beside the destination (same file system), which is renamed into place once
complete and removed when anything fails, so that a reader (a resume, a second process, a user) never meets half a
folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid


def _fsync(path: str, directory: bool = False) -> None:
    descriptor = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _flush_to_disk(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync(root, directory=True)


def hidden_staging_folder(destination: str) -> str:
    """A new, empty hidden folder beside `destination` (`.NAME.partial-XXXX`), with a normal folder's permissions."""
    parent = os.path.dirname(os.path.abspath(destination))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(destination))}.partial-", dir=parent)
    # mkdtemp makes the folder private (0700); the result gets the permissions of any folder the user creates
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    return staging


def publish_folder(staging: str, destination: str, *, overwrite: bool = False, durable: bool = False) -> None:
    """Rename the finished `staging` folder to `destination`.

    Args:
        staging (`str`): the complete folder, on the same file system as `destination`.
        destination (`str`): where it goes. An empty folder there is replaced.
        overwrite (`bool`, *optional*, defaults to `False`): replace a non-empty `destination` (moved aside first,
            since a rename onto a non-empty folder fails, and removed after); otherwise that is an error.
        durable (`bool`, *optional*, defaults to `False`): flush the files to disk before the rename and the parent
            folder after it, so that after a power cut the renamed folder never holds files whose data was lost.

    Raises:
        `FileExistsError`: `destination` holds files and `overwrite` is `False` (e.g. another process published
            first); `staging` is left as it was.
    """
    if durable:
        _flush_to_disk(staging)
    if os.path.isdir(destination) and not os.listdir(destination):
        os.rmdir(destination)
    if os.path.exists(destination):
        if not overwrite:
            raise FileExistsError(f"{destination} already exists and is not empty")
        aside = f"{os.path.normpath(destination)}.old-{uuid.uuid4().hex[:8]}"
        os.replace(destination, aside)
        os.replace(staging, destination)
        shutil.rmtree(aside)
    else:
        os.replace(staging, destination)
    if durable:
        _fsync(os.path.dirname(os.path.abspath(destination)), directory=True)


@contextlib.contextmanager
def folder_written_whole(destination: str, *, overwrite: bool = False):
    """Write `destination` through a hidden staging folder: the block writes into the folder it is given, and the
    folder is renamed into place when the block ends without error, or removed when it fails.

        with folder_written_whole(output_dir) as folder:
            model.save_pretrained(folder)
    """
    staging = hidden_staging_folder(destination)
    try:
        yield staging
        publish_folder(staging, destination, overwrite=overwrite)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def format_bytes(size: float) -> str:
    """`size` bytes in decimal units (`1.5 GB`), as the recipe's room messages print them."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
