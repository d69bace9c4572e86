#!/usr/bin/env python
"""Fine-tune a VITS / MMS-TTS model (`transformers.VitsModel`) on your recordings.

    accelerate launch run_finetune.py configs/demo.json          # the bundled demo, about two minutes on CPU
    python run_finetune.py configs/demo.json                     # the same, one process
    accelerate launch run_finetune.py configs/mms_kmr_common_voice.json
    python run_finetune.py --model_name_or_path facebook/mms-tts-kmr-script_latin --dataset_name <folder> \\
        --output_dir outputs/kmr --max_steps 2000 --eval_strategy steps --eval_steps 200 --save_steps 200
    python run_finetune.py configs/mms_kmr_common_voice.json --preprocessing_only   # build the feature cache once

Arguments: one JSON or YAML file, or flags (`--help`); `recipe/config.py` documents them all. Exit status: 0; one line
`run_finetune.py: error: MESSAGE` and 2 for bad input, 3 for an unavailable resource (no room, no permission, the Hub
unreachable, the output folder held by another run), 4 for a failed peer process (`recipe.errors`; `RECIPE_DEBUG=1`
also shows the traceback); 128 + the signal's number after Ctrl-C / SIGTERM stopped training cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time

import datasets
import transformers
from transformers import set_seed

from recipe.audio import SpectrogramConfig
from recipe.data.collator import VitsDataCollator
from recipe.data.pipeline import prepare_datasets
from recipe.data.replay import mix_replay, replay_args
from recipe.errors import ArgumentsError, run_command
from recipe.model.losses import L2SPReference
from recipe.model.training_forward import VitsForTraining
from recipe.training.amplitude_monitor import AmplitudeMonitorCallback
from recipe.training.amplitude_probe import reference_rms_from_dataset
from recipe.training.callbacks import AudioSamplesCallback, TrainingLogLineCallback, configure_progress_bars
from recipe.training.listening_callback import ListeningCallback
from recipe.training.listening_setup import build_listening, monitor_sentences
from recipe.training.parser import RecipeArgumentParser
from recipe.training.precision import cpu_bf16_hint
from recipe.training.rate_fit import fit_speaking_rate
from recipe.training.run_lock import holding_output_dir
from recipe.training.run_setup import (
    check_vocabulary,
    extend_tokenizer,
    load_model_config,
    load_model_for_training,
    load_run_discriminator,
    load_tokenizer,
)
from recipe.training.signals import ForcedStop, TrainingInterrupted
from recipe.training.trainer import VitsTrainer
from recipe.voices.lineage import append_round, read_lineage, round_entry, write_lineage
from recipe.voices.speaker_map import model_speaker_order, read_speaker_map, write_speaker_map

logger = logging.getLogger("run_finetune")


def parse_arguments(argv: list[str] | None = None):
    """`(ModelArguments, DataArguments, VitsTrainingArguments)` from flags, or from one JSON / YAML file whose values
    the flags after it override (`run_finetune.py configs/demo.json --max_steps 50`).

    Raises:
        `ArgumentsError` (a `ValueError` and an `InputError`): a mistyped flag or file key (naming the closest real
            ones), a value of the wrong type or one the arguments refuse; `run_finetune.py` prints it as one line.
    """
    return RecipeArgumentParser().parse(sys.argv[1:] if argv is None else argv)


def resume_command(argv: list[str], checkpoint: str) -> str:
    """The command that resumes this run from `checkpoint`: the same arguments, `--resume_from_checkpoint` replaced.

    Under several processes it starts with `accelerate launch <the same launch options>`, which this process cannot
    see; otherwise with `python`.

    Args:
        argv (`list[str]`): the arguments the run was started with (`sys.argv[1:]`).
        checkpoint (`str`): the checkpoint folder.
    """
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in ("--resume_from_checkpoint", "--resume-from-checkpoint"):
            skip = True
            continue
        if word.startswith(("--resume_from_checkpoint=", "--resume-from-checkpoint=")):
            continue
        kept.append(word)
    script = sys.argv[0] if os.path.basename(sys.argv[0]) == os.path.basename(__file__) else __file__
    launcher = (
        "accelerate launch <the same launch options>" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "python"
    )
    return f"{launcher} {shlex.join([script, *kept, '--resume_from_checkpoint', checkpoint])}"


def hours_of_audio(dataset, sampling_rate: int) -> float:
    return sum(dataset["waveform_length"]) / sampling_rate / 3600


def build_callbacks(training_args, tokenizer, eval_dataset, sampling_rate: int) -> list:
    callbacks = [TrainingLogLineCallback()]
    if eval_dataset is None or training_args.eval_strategy == "no":
        reason = "there is no eval split" if eval_dataset is None else "--eval_strategy is 'no'"
        logger.warning(
            f"The amplitude monitor runs at evaluations and {reason}: it is off, and --amplitude_patience "
            f"({training_args.amplitude_patience}), --amplitude_warning_ratio, --amplitude_critical_ratio and "
            "--amplitude_monitor_texts have no effect (nor do the TensorBoard audio samples). Evaluate (e.g. "
            "--eval_strategy steps --eval_steps N) to watch for a fading voice."
        )
        return callbacks
    texts, scoring_texts = monitor_sentences(training_args, tokenizer, eval_dataset)
    monitor = AmplitudeMonitorCallback(
        tokenizer,
        texts,
        reference_rms=reference_rms_from_dataset(eval_dataset, sampling_rate),
        warning_ratio=training_args.amplitude_warning_ratio,
        critical_ratio=training_args.amplitude_critical_ratio,
        patience=training_args.amplitude_patience,
        sampling_rate=sampling_rate,
    )
    callbacks.append(monitor)
    # scores the monitor's synthesis, so it comes after it
    scorer = build_listening(training_args, eval_dataset, scoring_texts, sampling_rate)
    if scorer is not None:
        callbacks.append(ListeningCallback(scorer, monitor, sampling_rate))
    if "tensorboard" in training_args.report_to:
        callbacks.append(AudioSamplesCallback(tokenizer, texts, sampling_rate=sampling_rate))
    return callbacks


def take_over_hub_upload(training_args) -> bool:
    """Whether to push at the end. The Hub upload is this script's (model, tokenizer, card), not Trainer's (which
    would also send checkpoints): Trainer's `push_to_hub` is turned off."""
    push_to_hub = training_args.push_to_hub
    if push_to_hub and not training_args.hub_model_id:
        raise ArgumentsError("--push_to_hub needs --hub_model_id (owner/name)")
    training_args.push_to_hub = False
    return push_to_hub


def configure_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    # The recipe's own lines (data report, cache hits, progress, amplitude status) are INFO: shown on the main process
    # unless --log_level says otherwise ("passive", the default, would leave them at transformers' WARNING).
    recipe_level = log_level
    if training_args.log_level == "passive":
        recipe_level = logging.INFO if training_args.should_log else logging.WARNING
    for name in ("run_finetune", "recipe"):
        logging.getLogger(name).setLevel(recipe_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    # bars on a terminal only (--disable_tqdm is on by default elsewhere), as the Trainer's own bar
    configure_progress_bars(on_terminal=not training_args.disable_tqdm)


def build_features(model_args, data_args, training_args, tokenizer, config) -> tuple[dict, dict, object]:
    """The splits, the data report, and the training set (mixed with the replay data with `--replay_dataset_name`).

    Built once by the main process, read from the Arrow cache by the others. local=False: with several machines, the
    main process of the whole run (not one per machine) builds them into the shared --cache_dir.
    """
    # --speakers on a multi-speaker model: the data's speakers take the model's ids, new ones follow
    order = model_speaker_order(model_args.model_name_or_path, config.num_speakers) if data_args.speakers else None
    with training_args.main_process_first(local=False, desc="dataset preprocessing"):
        splits, data_report = prepare_datasets(
            data_args, tokenizer, config, training_args.output_dir, token=model_args.token, speaker_order=order
        )
        if data_args.replay_dataset_name:
            # the model's own speakers, labelled as the new data is
            labels = tuple(splits["train"].features["speaker_id"].names) if order is not None else None
            replay_splits, _ = prepare_datasets(
                replay_args(data_args, order), tokenizer, config, os.path.join(training_args.output_dir, "replay"),
                token=model_args.token, speaker_order=labels, only_speakers=order,
            )  # fmt: skip
    train_dataset = splits["train"]
    if data_args.replay_dataset_name:
        train_dataset, replay_report = mix_replay(
            train_dataset,
            replay_splits["train"],
            data_args.replay_fraction,
            seed=training_args.seed,
            num_speakers=config.num_speakers,
        )
        logger.info(f"Replay: {replay_report}")
    return splits, data_report, train_dataset


def resume_argument(resume):
    """`--resume_from_checkpoint` as `Trainer.train` takes it: `True` for "true" / "last" (the newest intact
    checkpoint-N in output_dir), `None` for "false" / "none" / "", else unchanged (a folder)."""
    if isinstance(resume, str) and resume.lower() in {"true", "last"}:
        return True
    if isinstance(resume, str) and resume.lower() in {"false", "none", ""}:
        return None
    return resume


def record_round(
    trainer, model_args, data_args, round_hours: float, added_characters: list[str], speakers: dict | None
) -> list[dict]:
    """The starting folder's rounds plus this one (for the next round and the model card), written by the main
    process into output_dir beside the saved model, with the speaker map of a `--speakers` run."""
    entry = round_entry(model_args, data_args, trainer.state.global_step, round_hours, added_characters)
    lineage = append_round(read_lineage(model_args.model_name_or_path), entry)
    if trainer.is_world_process_zero():
        write_lineage(trainer.args.output_dir, lineage)
        if speakers is not None:
            write_speaker_map(trainer.args.output_dir, speakers)
    return lineage


def save_final_model(trainer, train_split, tokenizer) -> dict:
    """The trained model into output_dir, its speaking rate fitted first with `--fit_speaking_rate`; returns the
    fit's figures (`recipe.training.rate_fit`)."""
    rate_fit = fit_speaking_rate(trainer, train_split, tokenizer)
    trainer.save_model()
    return rate_fit


def report_metrics(trainer, split: str, metrics: dict) -> None:
    trainer.log_metrics(split, metrics)
    trainer.save_metrics(split, metrics)


def main(argv: list[str] | None = None) -> dict:
    """Runs the recipe; returns the final metrics (train, eval) as a dict."""
    started_at = time.monotonic()

    # 1. Arguments and logging
    model_args, data_args, training_args = parse_arguments(argv)
    push_to_hub = take_over_hub_upload(training_args)
    configure_logging(training_args)
    logger.info(f"Process {training_args.process_index}/{training_args.world_size}, device {training_args.device}")
    if (hint := cpu_bf16_hint(training_args.precision, training_args.use_cpu)) and training_args.process_index == 0:
        logger.info(hint)
    set_seed(training_args.seed)

    # one run per --output_dir: refused (exit status 3) while another run holds it; released however this ends
    with holding_output_dir(training_args):
        # 2. Tokenizer and model configuration (enough to build the features). New letters go into the tokenizer before
        # the features are tokenized, so the cached input_ids use them.
        tokenizer = load_tokenizer(model_args)
        config = load_model_config(model_args)
        check_vocabulary(tokenizer, config)
        tokenizer, added_characters = extend_tokenizer(model_args, data_args, training_args, tokenizer)

        # 3. Features
        splits, data_report, train_dataset = build_features(model_args, data_args, training_args, tokenizer, config)
        eval_dataset = splits["eval"]
        logger.info(f"{len(train_dataset)} training and {len(eval_dataset)} eval clips")
        if data_args.preprocessing_only:
            logger.info("--preprocessing_only: the features are cached; exiting before training")
            return {"data_report": data_report}

        # 4. Model, discriminator and the reference of the starting weights
        vits, embedding_callbacks, speakers = load_model_for_training(
            model_args, data_args, config, tokenizer, added_characters, splits["train"]
        )
        model = VitsForTraining(vits, segment_size=training_args.segment_size)
        discriminator = load_run_discriminator(model_args)
        l2sp = L2SPReference(vits) if training_args.l2sp_weight > 0 else None

        # 5. Trainer
        sampling_rate = config.sampling_rate
        trainer = VitsTrainer(
            model=model,
            args=training_args,
            discriminator=discriminator,
            l2sp=l2sp,
            budget_started_at=started_at,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset if training_args.eval_strategy != "no" else None,
            data_collator=VitsDataCollator(
                SpectrogramConfig.from_model_config(config), pad_token_id=tokenizer.pad_token_id
            ),
            processing_class=tokenizer,
            callbacks=build_callbacks(training_args, tokenizer, eval_dataset, sampling_rate) + embedding_callbacks,
        )

        # 6. Train: checkpoints are model folders; the final output_dir holds model, tokenizer and discriminator
        train_result = trainer.train(resume_from_checkpoint=resume_argument(training_args.resume_from_checkpoint))
        metrics = dict(train_result.metrics) | save_final_model(trainer, splits["train"], tokenizer)
        metrics["train_hours_of_audio"] = hours_of_audio(train_dataset, sampling_rate)
        # this round's own data, without the replay
        lineage = record_round(
            trainer, model_args, data_args, hours_of_audio(splits["train"], sampling_rate), added_characters, speakers
        )
        if trainer.budget is not None:
            metrics["stopped_by_time_budget"] = trainer.budget.stopped_by_budget
        report_metrics(trainer, "train", metrics)
        trainer.save_state()

        # 7. Final evaluation of the saved weights
        if trainer.eval_dataset is not None:
            eval_metrics = trainer.evaluate()
            report_metrics(trainer, "eval", eval_metrics)
            metrics.update(eval_metrics)

        # 8. Hub: model, tokenizer and card (and the discriminator with --hub_include_discriminator)
        if push_to_hub and trainer.is_world_process_zero():
            push(trainer, model_args, data_args, training_args, metrics, lineage)
        return metrics


def push(trainer, model_args, data_args, training_args, metrics: dict, lineage: list[dict] | None = None) -> None:
    from recipe.training.hub import build_model_card, push_to_hub

    final_losses = {
        key[len("eval_") :]: value
        for key, value in metrics.items()
        if key.startswith("eval_") and key[len("eval_") :] in TrainingLogLineCallback.COMPONENTS
    }
    monitor = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, AmplitudeMonitorCallback)), None)
    amplitude = None
    if monitor is not None and monitor.last_result is not None:
        amplitude = {"status": monitor.last_result["status"], "last_evaluation": monitor.last_result}
    # the saved config says which loading snippet works for this model (a type-2 Piper decoder is not transformers')
    with open(os.path.join(training_args.output_dir, "config.json"), encoding="utf-8") as handle:
        model_config = json.load(handle)
    card = build_model_card(
        base_model=model_args.model_name_or_path or model_args.config_name,
        dataset_name=data_args.dataset_name,
        hours_of_audio=metrics["train_hours_of_audio"],
        steps=trainer.state.global_step,
        final_losses=final_losses,
        amplitude_status=amplitude,
        language=getattr(trainer.processing_class, "language", None),
        lineage=lineage,
        model_config=model_config,
        speakers=read_speaker_map(training_args.output_dir),
    )
    repo_id = push_to_hub(
        training_args.output_dir,
        training_args.hub_model_id,
        card,
        include_discriminator=model_args.hub_include_discriminator,
        token=training_args.hub_token or model_args.token,
        private=bool(training_args.hub_private_repo),
    )
    logger.info(f"Pushed to https://huggingface.co/{repo_id}")


def exit_after_stop(status: int) -> None:
    """Leave at once after a stop under several processes, once everything is saved and printed.

    Left to the interpreter's teardown, gloo's threads were seen to abort the process ("terminate called without an
    active exception", exit -6 instead of 143) after the checkpoint was saved, also after `destroy_process_group`:
    `os._exit` skips those destructors. Only used by the command, never when `cli` is called in-process.
    """
    import torch.distributed as dist

    if status >= 128 and dist.is_available() and dist.is_initialized():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def cli(argv: list[str] | None = None) -> int:
    """`main` as a command; returns the exit status.

    - 0 once training, evaluation and saving are done;
    - one line `run_finetune.py: error: MESSAGE`, not a traceback, for an `InputError`, with its status: 2 for bad
      input (the arguments, the data, a checkpoint, a missing package), 3 for an unavailable resource (no room, no
      permission, the Hub unreachable, `--output_dir` in use by another run: `recipe.training.run_lock`), 4 for a
      failed peer process; every process prints its own (`recipe.errors.run_command`, `RECIPE_DEBUG=1` also shows
      the traceback). Any other error is a bug and keeps its traceback;
    - 128 + the signal's number when Ctrl-C / SIGTERM stopped training, with the checkpoint saved and the command
      that resumes from it (printed by the main process).
    """
    return run_command("run_finetune.py", train_until_stopped, argv)


def train_until_stopped(argv: list[str]) -> int:
    """`main(argv)`, with a stop by a signal turned into its exit status (see `cli`)."""
    try:
        main(argv)
    except TrainingInterrupted as stop:
        if os.environ.get("RANK", "0") == "0":
            if stop.checkpoint is not None:
                print(f"{stop}. To resume:\n    {resume_command(argv, stop.checkpoint)}", flush=True)
            else:
                print(f"{stop}.", flush=True)
        return stop.exit_code
    except ForcedStop as stop:
        # the handler logged it; the checkpoints already complete in output_dir are kept
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(
            "Interrupted outside training: nothing more was saved (complete checkpoints already in --output_dir "
            "are kept).",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    status = cli()
    exit_after_stop(status)
    sys.exit(status)
