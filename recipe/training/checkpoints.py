"""Checkpoints that are all there or not there: staged writes, intact-checkpoint discovery, room and error reports.

- Writing: `checkpoint-N` is written into `partial-checkpoint-N` beside it, its files flushed to disk, and the folder
  renamed into place (`commit`). A write that is interrupted (a full disk, a kill, a power cut after the flush)
  leaves no `checkpoint-N`, only a `partial-checkpoint-N` that the next run removes (`remove_partial_checkpoints`).
  `Trainer`'s checkpoint rotation and `get_last_checkpoint` only look at `checkpoint-*`: they never see a partial one.
- Reading: `verify_checkpoint` checks that the files a resume loads are there and whole (safetensors headers cover
  their files, `.pt` / `.pth` zip archives have their central directory and unpickle with `weights_only=True`, JSON
  files parse) without reading the weights; `newest_intact_checkpoint` is what `--resume_from_checkpoint True`
  resumes from. A pickle that holds objects other than tensors is refused for safety, naming the file
  (`pickle_problem`), before `Trainer` meets it with torch's raw message.
- Room: `estimate_checkpoint_bytes` prices one checkpoint from the parameter counts; `check_room` refuses to start a
  run whose output folder cannot be written or cannot hold the checkpoints it keeps.
- Errors: `describe_save_failure` says what went wrong in a save (no space, permission, path) in words.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import pickle
import re
import shutil
import uuid
import zipfile

import torch
from safetensors import safe_open
from transformers.trainer_pt_utils import safe_globals
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recipe.errors import InputError
from recipe.folders import format_bytes, publish_folder
from recipe.hub_access import is_refused_pickle, refused_pickle_reason

logger = logging.getLogger(__name__)

PARTIAL_PREFIX = "partial-"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# tokenizer, configs, trainer state, RNG states and the monitor's status: 32 kB in the demo's checkpoint-6;
# trainer_state.json and amplitude_status.json grow with the logs of a long run
SMALL_FILES_BYTES = 256 * 1024
# "room for a few checkpoints": what the output folder must hold before training starts
FEW_CHECKPOINTS = 3


class CheckpointSaveError(InputError, RuntimeError):
    """A checkpoint (or the output folder it goes to) could not be written."""


class CheckpointLoadError(InputError, RuntimeError):
    """A checkpoint is incomplete or damaged: names the file and the reason."""


# -- writing ----------------------------------------------------------------------------------------------------------


def partial_path(checkpoint: str) -> str:
    """The staging folder `checkpoint` is written into before it is renamed into place."""
    parent, name = os.path.split(os.path.normpath(checkpoint))
    return os.path.join(parent, PARTIAL_PREFIX + name)


def commit(staging: str, checkpoint: str) -> None:
    """Flush `staging`'s files to disk and rename it to `checkpoint`, replacing an older folder of that name (a
    checkpoint of the same step from an earlier run in this output_dir).

    The flush comes first so that after a power cut the renamed folder never holds files whose data was lost.
    """
    publish_folder(staging, checkpoint, overwrite=True, durable=True)


def remove_partial_checkpoints(run_dir: str) -> list[str]:
    """Remove the `partial-checkpoint-*` folders an interrupted save left in `run_dir`; returns their paths."""
    if not os.path.isdir(run_dir):
        return []
    removed = []
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if name.startswith(PARTIAL_PREFIX + PREFIX_CHECKPOINT_DIR) and os.path.isdir(path):
            logger.warning(f"Removing {path}: an unfinished checkpoint left by an interrupted save")
            shutil.rmtree(path)
            removed.append(path)
    return removed


# -- reading ----------------------------------------------------------------------------------------------------------


def checkpoint_step(path: str) -> int | None:
    """N of a `checkpoint-N` folder, else None."""
    match = _CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(path)))
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir: str) -> list[str]:
    """The `checkpoint-N` folders of `run_dir`, newest (highest N) first."""
    if not os.path.isdir(run_dir):
        return []
    folders = [os.path.join(run_dir, name) for name in os.listdir(run_dir) if _CHECKPOINT_NAME.match(name)]
    return sorted((f for f in folders if os.path.isdir(f)), key=checkpoint_step, reverse=True)


def file_problem(path: str) -> str | None:
    """Why the file at `path` cannot be loaded (missing, empty, truncated, not parseable), or None.

    Reads headers only: a safetensors header must cover the whole file, a `.pt` / `.pth` / `.bin` zip archive must
    have its central directory (the end of the file) and a `.pt` / `.pth` one unpickle safely (`pickle_problem`), a
    `.json` file must parse.
    """
    if not os.path.isfile(path):
        return "missing"
    if os.path.getsize(path) == 0:
        return "empty (0 bytes)"
    try:
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt"):
                pass
        elif path.endswith((".pt", ".pth", ".bin")):
            with zipfile.ZipFile(path):
                pass
            if not path.endswith(".bin"):  # training_args.bin is a pickle of arguments, which a resume never loads
                return pickle_problem(path)
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
    except Exception as error:  # noqa: BLE001 - the failure is the answer: returned, never dropped
        # OSError, json / zip errors, and safetensors' own SafetensorError (no common base but Exception)
        return f"damaged ({type(error).__name__}: {error})"
    return None


def pickle_problem(path: str) -> str | None:
    """Why `torch.load(path, weights_only=True)` refuses the file (it holds pickled objects other than tensors,
    `recipe.hub_access.refused_pickle_reason`), or None.

    The file is memory-mapped (`mmap=True`): only its pickle is read, not its tensors. numpy's RNG state is allowed,
    as `Trainer` allows it when it loads `rng_state.pth` (`safe_globals`).

    Raises:
        Whatever else `torch.load` raises (a damaged file): `file_problem` reports it as damage.
    """
    try:
        with safe_globals():
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        if not is_refused_pickle(error):
            raise
        return refused_pickle_reason(error)
    return None


def verify_checkpoint(checkpoint: str, required: list[str]) -> list[str]:
    """Problems of `checkpoint`, one `"<file>: <reason>"` each; empty when it is intact.

    Args:
        checkpoint (`str`): a checkpoint folder.
        required (`list[str]`): paths relative to it that a resume loads; each must be there and whole. Every other
            safetensors, zip and JSON file in the folder is checked too.
    """
    if not os.path.isdir(checkpoint):
        return [f"{checkpoint}: no such folder"]
    problems = []
    present = set()
    for root, _, files in os.walk(checkpoint):
        for name in files:
            present.add(os.path.relpath(os.path.join(root, name), checkpoint))
    for relative in sorted(set(required) | present):
        problem = file_problem(os.path.join(checkpoint, relative))
        if problem is not None:
            problems.append(f"{os.path.join(checkpoint, relative)}: {problem}")
    return problems


def newest_intact_checkpoint(run_dir: str, required: list[str]) -> tuple[str | None, list[tuple[str, list[str]]]]:
    """The newest `checkpoint-N` of `run_dir` that `verify_checkpoint` finds intact, and the newer ones it skipped.

    Returns:
        `tuple(str | None, list)`: the checkpoint (None when there is none intact), and `(checkpoint, problems)` for
        each newer one skipped, newest first.
    """
    skipped = []
    for checkpoint in list_checkpoints(run_dir):
        problems = verify_checkpoint(checkpoint, required)
        if not problems:
            return checkpoint, skipped
        skipped.append((checkpoint, problems))
    return None, skipped


# -- room -------------------------------------------------------------------------------------------------------------


def _tensor_bytes(module: torch.nn.Module, trainable_only: bool = False) -> int:
    if trainable_only:
        return sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def estimate_checkpoint_bytes(model, discriminator=None, save_only_model: bool = False) -> dict[str, int]:
    """The size of one checkpoint and of the final model folder, from the parameter counts.

    A checkpoint holds the model twice (the inference copy and `training_state/`'s weights as trained), the
    discriminator twice, and unless `save_only_model` the optimizers' state: two tensors (AdamW's moments) the size
    of each trainable parameter.

    Args:
        model (`VitsForTraining`): the training module (`.vits` is the inference model).
        discriminator (`torch.nn.Module`, *optional*): trained alongside.
        save_only_model (`bool`, *optional*, defaults to `False`): checkpoints without optimizer state.

    Returns:
        `dict`: `checkpoint` and `final_model` in bytes.
    """
    inference = _tensor_bytes(model.vits) + (_tensor_bytes(discriminator) if discriminator is not None else 0)
    training = _tensor_bytes(model) + (_tensor_bytes(discriminator) if discriminator is not None else 0)
    optimizer = 0
    if not save_only_model:
        optimizer = 2 * _tensor_bytes(model, trainable_only=True)
        if discriminator is not None:
            optimizer += 2 * _tensor_bytes(discriminator, trainable_only=True)
    return {
        "checkpoint": inference + training + optimizer + SMALL_FILES_BYTES,
        "final_model": inference + SMALL_FILES_BYTES,
    }


def checkpoints_to_hold(args) -> int:
    """How many checkpoints the output folder needs room for before training starts: those the run holds at once,
    at most the saves it makes, and at most `FEW_CHECKPOINTS`; at least one (a stop on a signal saves one).

    Held at once with `--save_total_limit L`: L, or 2 when the best checkpoint is kept beside the newest
    (`--load_best_model_at_end`), plus the new one written before rotation deletes the oldest.
    """
    saves = FEW_CHECKPOINTS
    if args.save_strategy == "no":
        saves = 1
    elif args.save_strategy == "steps" and args.max_steps > 0:
        every = args.save_steps if args.save_steps >= 1 else math.ceil(args.save_steps * args.max_steps)
        saves = args.max_steps // max(1, int(every)) + 1  # + the save at the end
    held = saves
    if args.save_total_limit:
        held = max(args.save_total_limit, 2 if args.load_best_model_at_end else 1) + 1
    return max(1, min(saves, held, FEW_CHECKPOINTS))


def check_writable(folder: str) -> None:
    """Create `folder` if needed and write and remove a probe file in it.

    Raises:
        `CheckpointSaveError` naming the folder and the reason (permission, read-only, not a folder, no space).
    """
    probe = os.path.join(folder, f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"0")
        os.remove(probe)
    except OSError as error:
        raise CheckpointSaveError(
            f"Cannot write in the output folder {folder}: {describe_os_error(error)}. Choose another --output_dir "
            "or fix its permissions; nothing has been trained yet."
        ) from error


def check_room(folder: str, checkpoint_bytes: int, num_checkpoints: int, final_model_bytes: int) -> dict:
    """Refuse to start when `folder`'s filesystem cannot hold `num_checkpoints` checkpoints and the final model.

    Returns:
        `dict`: `needed` and `free` bytes.

    Raises:
        `CheckpointSaveError` saying how much is needed and how much is free.
    """
    needed = checkpoint_bytes * num_checkpoints + final_model_bytes
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CheckpointSaveError(
            f"Not enough free space for {folder}: {num_checkpoints} checkpoint(s) of about "
            f"{format_bytes(checkpoint_bytes)} each and the final model ({format_bytes(final_model_bytes)}) need "
            f"{format_bytes(needed)}, and {format_bytes(free)} is free. Free some space, keep fewer checkpoints "
            "(--save_total_limit), save without optimizer state (--save_only_model), or choose another --output_dir."
        )
    return {"needed": needed, "free": free}


# -- errors -----------------------------------------------------------------------------------------------------------

_ERRNO_WORDS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is larger than the filesystem allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the filesystem is read-only",
    errno.ENOENT: "the folder does not exist (was it removed, or its disk unmounted?)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EIO: "an input/output error of the device",
}


def describe_os_error(error: OSError) -> str:
    words = _ERRNO_WORDS.get(error.errno, error.strerror or str(error))
    where = f" ({error.filename})" if error.filename else ""
    return f"{words}{where}"


def describe_save_failure(error: BaseException, folder: str, checkpoint_bytes: int | None = None) -> str:
    """What made a save into `folder` fail, in words: the first `OSError` in the exception's chain, else the free
    space measured now against the size of a checkpoint (torch's zip writer reports a full disk as
    `unexpected pos ...`, with no errno)."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return describe_os_error(seen)
        seen = seen.__cause__ or seen.__context__
    existing = folder
    while existing and not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    if not existing:
        return f"{type(error).__name__}: {error}"
    free = shutil.disk_usage(existing).free
    if checkpoint_bytes is not None and free < checkpoint_bytes:
        return (
            f"most likely no space left on the device: {format_bytes(free)} is free and a checkpoint takes about "
            f"{format_bytes(checkpoint_bytes)} ({type(error).__name__}: {error})"
        )
    return f"{type(error).__name__}: {error} ({format_bytes(free)} free on the device)"
