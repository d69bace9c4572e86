"""What a `VitsTrainer` checkpoint holds, where, and how it is found, written and read back.

`checkpoint-N` is a `VitsModel` folder (`save_model_folder`: the inference weights, the tokenizer, the discriminator,
`training_args.bin`) plus `Trainer`'s own files (`trainer_state.json`, `optimizer.pt`, `scheduler.pt`, RNG states)
and a `training_state/` subfolder with what exact resume needs and a plain model folder cannot: the weights as
trained (weight-norm parametrized), the discriminator's, its optimizer, schedule and gradient scaler
(`recipe.training.discriminator_update`) and the step plan of `--target_hours` (`recipe.training.step_plan`).

This module names those files (`checkpoint_files`: the ones a resume loads), picks the checkpoint to resume from
(`resolve_resume`), checks the output folder before the first step, writes and reads the weights as trained, and says
what a failed save or load was about, naming the file (torch's and safetensors' errors name none). A checkpoint of
another model configuration is refused with one summary (`shape_mismatch_error`: the tensors that differ, the
`config.json` fields behind them) instead of `load_state_dict`'s line per tensor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
from dataclasses import asdict

import torch
from safetensors.torch import load_file, save_file
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recipe.hub_access import is_refused_pickle, refused_pickle_message
from recipe.model.discriminator import DISCRIMINATOR_CONFIG_NAME, DISCRIMINATOR_WEIGHTS_NAME, save_discriminator
from recipe.model.preparation import save_for_inference
from recipe.training.checkpoints import (
    PARTIAL_PREFIX,
    CheckpointLoadError,
    CheckpointSaveError,
    check_room,
    check_writable,
    checkpoint_step,
    checkpoints_to_hold,
    describe_save_failure,
    estimate_checkpoint_bytes,
    newest_intact_checkpoint,
    pickle_problem,
    remove_partial_checkpoints,
    verify_checkpoint,
)

logger = logging.getLogger(__name__)

TRAINING_STATE_DIR = "training_state"
TRAINING_MODEL_WEIGHTS = "training_model.safetensors"
DISCRIMINATOR_TRAINING_WEIGHTS = "discriminator_training.safetensors"
DISCRIMINATOR_OPTIMIZER = "discriminator_optimizer.pt"
DISCRIMINATOR_SCHEDULER = "discriminator_scheduler.pt"
DISCRIMINATOR_SCALER = "discriminator_scaler.pt"
# the inference model's weights, as `VitsModel.save_pretrained` names them
MODEL_WEIGHTS_FILE = "model.safetensors"
# Trainer's own checkpoint files (transformers.trainer's names)
TRAINER_STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
TRAINING_ARGS_FILE = "training_args.bin"
MODEL_CONFIG_FILE = "config.json"
# how many differing tensors and config fields a shape-mismatch message lists (it counts them all)
MISMATCHES_SHOWN = 5
# config.json fields that say nothing about the architecture
_CONFIG_BOOKKEEPING = {"transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype"}


def checkpoint_files(with_discriminator: bool, with_optimizer: bool) -> list[str]:
    """The files of a checkpoint that resuming loads (paths relative to it).

    Args:
        with_discriminator (`bool`): the run trains a discriminator.
        with_optimizer (`bool`): the checkpoints hold the optimizers' state (no `--save_only_model`).
    """
    files = [TRAINER_STATE_FILE, MODEL_WEIGHTS_FILE, os.path.join(TRAINING_STATE_DIR, TRAINING_MODEL_WEIGHTS)]
    if with_discriminator:
        files += [DISCRIMINATOR_WEIGHTS_NAME, os.path.join(TRAINING_STATE_DIR, DISCRIMINATOR_TRAINING_WEIGHTS)]
    if with_optimizer:
        files += [OPTIMIZER_FILE, SCHEDULER_FILE]
        if with_discriminator:
            files += [
                os.path.join(TRAINING_STATE_DIR, name) for name in (DISCRIMINATOR_OPTIMIZER, DISCRIMINATOR_SCHEDULER)
            ]
    return files


# -- finding ----------------------------------------------------------------------------------------------------------


def _not_a_checkpoint(path: str, checkpoint: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{path} is missing: {checkpoint} is not a checkpoint written by VitsTrainer (to start from a model folder, "
        "pass it as --model_name_or_path instead of resuming from it)"
    )


def resolve_resume(resume: str | bool | None, run_dir: str, required: list[str]) -> str | None:
    """The checkpoint folder to resume from, checked intact; `True`: the newest intact one in `run_dir`.

    Args:
        resume (`str` or `bool`, *optional*): `--resume_from_checkpoint`: a folder, `True`, or `None` / `False`.
        run_dir (`str`): the run's output folder.
        required (`list[str]`): the files a resume loads (`checkpoint_files`).

    Raises:
        `CheckpointLoadError`: the named checkpoint is damaged, or (`True`) none is intact.
        `FileNotFoundError`: the named folder is a model folder, not a checkpoint.
    """
    if resume is None or resume is False:
        return None
    if resume is True:
        checkpoint, skipped = newest_intact_checkpoint(run_dir, required)
        for path, problems in skipped:
            logger.warning(f"Skipping {path}, incomplete or damaged: {'; '.join(problems)}")
        if checkpoint is None:
            found = f"{len(skipped)} checkpoint(s), none intact" if skipped else "no checkpoint-N folder"
            raise CheckpointLoadError(
                f"--resume_from_checkpoint True: nothing to resume from in {run_dir} ({found}). Start without "
                "--resume_from_checkpoint, or name a checkpoint folder."
            )
        if skipped:
            logger.warning(f"Resuming from {checkpoint}, the newest intact checkpoint in {run_dir}")
        return checkpoint
    weights = os.path.join(resume, TRAINING_STATE_DIR, TRAINING_MODEL_WEIGHTS)
    if not os.path.isfile(weights) and os.path.isfile(os.path.join(resume, "config.json")):
        raise _not_a_checkpoint(weights, resume)
    problems = verify_checkpoint(resume, required)
    if problems:
        intact, _ = newest_intact_checkpoint(os.path.dirname(os.path.normpath(resume)), required)
        hint = f" The newest intact checkpoint beside it is {intact}." if intact else ""
        raise CheckpointLoadError(
            f"Cannot resume from {resume}, it is incomplete or damaged: {'; '.join(problems)}.{hint}"
        )
    return resume


def where_to_resume(run_dir: str, required: list[str]) -> str:
    """Names the newest intact checkpoint of `run_dir` to resume from, or says there is none yet."""
    checkpoint, _ = newest_intact_checkpoint(run_dir, required)
    if checkpoint is None:
        return f"No checkpoint was saved in {run_dir} yet: start again"
    return f"Resume from {checkpoint} (--resume_from_checkpoint {checkpoint})"


def checkpoint_saved_at(run_dir: str, step: int, required: list[str]) -> str | None:
    """The checkpoint of `step` when one was saved, else the newest intact one (`None` when there is none)."""
    checkpoint = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")
    if not os.path.isdir(checkpoint):
        checkpoint, _ = newest_intact_checkpoint(run_dir, required)
    return checkpoint


def check_output_folder(run_dir: str, model, discriminator, args) -> None:
    """Before the first step: `run_dir` can be written, holds no unfinished checkpoint, and has room for the
    checkpoints the run keeps and the final model.

    Raises:
        `CheckpointSaveError`: the folder cannot be written or lacks room.
    """
    check_writable(run_dir)
    remove_partial_checkpoints(run_dir)
    sizes = estimate_checkpoint_bytes(model, discriminator, args.save_only_model)
    room = check_room(run_dir, sizes["checkpoint"], checkpoints_to_hold(args), sizes["final_model"])
    logger.info(
        f"{run_dir}: a checkpoint takes about {sizes['checkpoint'] / 1e6:.1f} MB; {room['free'] / 1e9:.1f} GB free"
    )


# -- writing ----------------------------------------------------------------------------------------------------------


def save_model_folder(output_dir: str, vits, processing_class, discriminator, args) -> None:
    """A folder `VitsModel.from_pretrained` and `pipeline("text-to-speech")` load (training-time weight norm
    removed), with the tokenizer, the discriminator and the training arguments."""
    os.makedirs(output_dir, exist_ok=True)
    name = os.path.basename(os.path.normpath(output_dir))
    if name.startswith(PARTIAL_PREFIX):
        logger.info(f"Saving {name[len(PARTIAL_PREFIX) :]} (into {output_dir}, renamed when complete)")
    else:
        logger.info(f"Saving model to {output_dir}")
    save_for_inference(vits, output_dir)
    if processing_class is not None:
        processing_class.save_pretrained(output_dir)
    if discriminator is not None:
        save_discriminator(discriminator, output_dir)
    torch.save(args, os.path.join(output_dir, TRAINING_ARGS_FILE))


def save_trainer_state(folder: str, state, callbacks: list) -> None:
    """`trainer_state.json` with the stateful callbacks' state (`callbacks` and the `TrainerControl`), as
    `Trainer._save_checkpoint` writes it."""
    for callback in callbacks:
        if not isinstance(callback, ExportableState):
            continue
        name, callback_state = callback.__class__.__name__, callback.state()
        if isinstance(state.stateful_callbacks[name], list):
            state.stateful_callbacks[name].append(callback_state)
        else:
            state.stateful_callbacks[name] = callback_state
    state.save_to_json(os.path.join(folder, TRAINER_STATE_FILE))


def save_training_weights(checkpoint: str, model, discriminator) -> None:
    """`training_state/`'s weights as trained: the training module's and the discriminator's."""
    folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
    os.makedirs(folder, exist_ok=True)
    save_file(_contiguous(model.state_dict()), os.path.join(folder, TRAINING_MODEL_WEIGHTS))
    if discriminator is not None:
        save_file(_contiguous(discriminator.state_dict()), os.path.join(folder, DISCRIMINATOR_TRAINING_WEIGHTS))


def save_failure(
    error: BaseException,
    staging: str,
    checkpoint: str,
    run_dir: str,
    step: int,
    required: list[str],
    checkpoint_bytes: int,
    remove_staging: bool,
) -> CheckpointSaveError:
    """The error of a failed save: what failed, and which checkpoint is the last complete one.

    Args:
        error (`BaseException`): what the save raised.
        staging (`str`): the `partial-checkpoint-N` folder being written.
        checkpoint (`str`): the checkpoint's final path.
        run_dir (`str`): the run's output folder.
        step (`int`): the step being saved.
        required (`list[str]`): the files a resume loads (`checkpoint_files`), to find the last complete checkpoint.
        checkpoint_bytes (`int`): the estimated size of a checkpoint, to recognize a full disk.
        remove_staging (`bool`): this process writes the folder (the main process): the partial folder is removed
            first, as it frees the space a full disk needs and can never be resumed from.
    """
    if remove_staging and os.path.isdir(staging):
        try:
            shutil.rmtree(staging)
        except OSError as cleanup_error:
            logger.warning(f"Could not remove the unfinished {staging}: {cleanup_error}")
    last, _ = newest_intact_checkpoint(run_dir, required)
    if last is not None:
        last_words = (
            f"The last complete checkpoint is {last} (step {checkpoint_step(last)}): resume from it with "
            f"--resume_from_checkpoint {last} once the cause is fixed."
        )
    else:
        last_words = f"There is no complete checkpoint in {run_dir}."
    return CheckpointSaveError(
        f"Saving {checkpoint} at step {step} failed: {describe_save_failure(error, run_dir, checkpoint_bytes)}. "
        f"Nothing of it was kept. {last_words}"
    )


# -- reading ----------------------------------------------------------------------------------------------------------


def load_training_weights(checkpoint: str, model, discriminator) -> None:
    """The generator's and the discriminator's weights exactly as trained (strict).

    Raises:
        `CheckpointLoadError`: the checkpoint's tensors are not the model's (`shape_mismatch_error`), or a file is
            damaged.
        `FileNotFoundError`: `checkpoint` is not a VitsTrainer checkpoint, or has no discriminator weights.
    """
    folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
    path = os.path.join(folder, TRAINING_MODEL_WEIGHTS)
    if not os.path.isfile(path):
        raise _not_a_checkpoint(path, checkpoint)
    vits = getattr(model, "vits", model)
    _load_matching(model, load_weights(path), checkpoint, MODEL_CONFIG_FILE, vits.config, "model")
    if discriminator is not None:
        path = os.path.join(folder, DISCRIMINATOR_TRAINING_WEIGHTS)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: was {checkpoint} trained with --discriminator none?")
        config = discriminator.config
        _load_matching(
            discriminator, load_weights(path), checkpoint, DISCRIMINATOR_CONFIG_NAME, config, "discriminator"
        )


def _load_matching(module, state: dict, checkpoint: str, config_file: str, config, part: str) -> None:
    mismatch = shape_mismatch_error(checkpoint, state, module.state_dict(), config_file, config, part)
    if mismatch is not None:
        raise mismatch
    module.load_state_dict(state, strict=True)


def _shape(tensor) -> str:
    return "absent" if tensor is None else str(tuple(tensor.shape))


def _config_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else asdict(config)


def _differing_config_fields(checkpoint: str, config_file: str, config) -> list[str]:
    """`"field: A in the checkpoint, B here"` for each architecture field of `checkpoint`'s `config_file` that
    differs from `config` (a `PretrainedConfig` or a dataclass); empty when the file cannot be read (the tensors
    still say what differs)."""
    try:
        with open(os.path.join(checkpoint, config_file), encoding="utf-8") as handle:
            saved = json.load(handle)
        # a `PretrainedConfig` saves the fields that differ from the defaults: both sides with their defaults
        saved = type(config).from_dict(saved).to_dict() if hasattr(config, "from_dict") else saved
    except (OSError, ValueError, TypeError) as error:
        logger.warning(f"{os.path.join(checkpoint, config_file)}: not compared with this run's ({error})")
        return []
    current = json.loads(json.dumps(_config_dict(config), default=str))  # tuples as lists, as the saved JSON
    saved = json.loads(json.dumps(saved, default=str))
    return [
        f"{name}: {saved.get(name, 'absent')} in the checkpoint, {current.get(name, 'absent')} here"
        for name in sorted((set(saved) | set(current)) - _CONFIG_BOOKKEEPING)
        if saved.get(name) != current.get(name)
    ]


def shape_mismatch_error(
    checkpoint: str, saved: dict, expected: dict, config_file: str, config, part: str = "model"
) -> CheckpointLoadError | None:
    """The error of a checkpoint whose tensors are not those of the model being trained, else None.

    Args:
        checkpoint (`str`): the checkpoint folder.
        saved (`dict`): the checkpoint's state dict of `part`.
        expected (`dict`): the state dict of the module being trained.
        config_file (`str`): the checkpoint's file that describes `part` (`config.json`, `discriminator_config.json`).
        config (`PretrainedConfig` or a dataclass): the configuration of the module being trained (`VitsConfig`,
            `DiscriminatorConfig`).
        part (`str`, *optional*, defaults to `"model"`): `"model"` or `"discriminator"`, for the message.

    Returns:
        `CheckpointLoadError` or `None`: names the checkpoint, the first `MISMATCHES_SHOWN` tensors that differ (shape,
        or absent on one side) with both shapes, how many differ in all, the differing fields of `config_file`, and
        what to do.
    """
    differing = [
        f"{name} {_shape(saved.get(name))} in the checkpoint, {_shape(expected.get(name))} here"
        for name in [*expected, *(name for name in saved if name not in expected)]  # in the module's order
        if name not in saved or name not in expected or saved[name].shape != expected[name].shape
    ]
    if not differing:
        return None
    fields = _differing_config_fields(checkpoint, config_file, config)
    listed = "; ".join(differing[:MISMATCHES_SHOWN]) + ("; ..." if len(differing) > MISMATCHES_SHOWN else "")
    fields_words = (
        f" The {config_file} fields that differ: {'; '.join(fields[:MISMATCHES_SHOWN])}"
        f"{'; ...' if len(fields) > MISMATCHES_SHOWN else ''}."
        if fields
        else ""
    )
    flags = "--model_name_or_path / --config_name" if part == "model" else "--discriminator_config_name"
    return CheckpointLoadError(
        f"Cannot resume from {checkpoint}: it holds a {part} of another configuration than the one being trained: "
        f"{len(differing)} of its tensors differ ({listed}).{fields_words} Resume with the same {flags} as the run "
        "that wrote it, or train this configuration into another --output_dir without --resume_from_checkpoint."
    )


def _load_error(names: str, error: BaseException) -> CheckpointLoadError:
    return CheckpointLoadError(f"Cannot load {names}: {type(error).__name__}: {error}")


@contextlib.contextmanager
def naming_trainer_files(checkpoint: str | None):
    """Around `Trainer._load_optimizer_and_scheduler`: a file that fails to load is named (torch.load's errors name
    none) in a `CheckpointLoadError`."""
    try:
        yield
    except pickle.UnpicklingError as error:
        if not is_refused_pickle(error):
            raise _load_error(_optimizer_files(checkpoint), error) from error
        refused = next((path for path in _optimizer_paths(checkpoint) if _refuses(path)), _optimizer_files(checkpoint))
        raise CheckpointLoadError(refused_pickle_message(refused, error)) from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise _load_error(_optimizer_files(checkpoint), error) from error


def _optimizer_paths(checkpoint: str) -> list[str]:
    return [os.path.join(checkpoint, OPTIMIZER_FILE), os.path.join(checkpoint, SCHEDULER_FILE)]


def _optimizer_files(checkpoint: str) -> str:
    return " or ".join(_optimizer_paths(checkpoint))


def _refuses(path: str) -> bool:
    """`torch.load(weights_only=True)` refuses `path` (`pickle_problem`); only its pickle is read."""
    try:
        return pickle_problem(path) is not None
    except Exception:  # noqa: BLE001 - a file damaged otherwise is not the refused one: asked of each file in turn
        return False


def load_weights(path: str) -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file` on the CPU; a damaged file is named (safetensors' errors name none)."""
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # noqa: BLE001 - SafetensorError has no narrower public base; re-raised with the file
        raise _load_error(path, error) from error


def torch_load(path: str):
    """`torch.load` of a state dict on the CPU; a damaged file, or one holding pickled objects other than tensors
    (refused for safety), is named (torch's errors name none)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if is_refused_pickle(error):
            raise CheckpointLoadError(refused_pickle_message(path, error)) from error
        raise _load_error(path, error) from error
    except (RuntimeError, OSError, EOFError) as error:
        raise _load_error(path, error) from error


def _contiguous(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses non-contiguous and shared tensors: save independent contiguous copies
    return {name: tensor.detach().contiguous().clone().cpu() for name, tensor in state_dict.items()}
