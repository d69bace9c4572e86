"""What `run_finetune.py` builds before training: the tokenizer (with the data's new letters), the model
configuration, the model to fine-tune (with its speakers and new letter embeddings, prepared for training) and the
discriminator. Each refusal is an `InputError` naming the flag and the value, which the command prints as one line.
"""

from __future__ import annotations

import json
import logging
import os

from transformers import VitsConfig, VitsModel, VitsTokenizer

from recipe import voices
from recipe.errors import ArgumentsError, InputError, MissingInputError
from recipe.model.discriminator import DiscriminatorConfig, load_discriminator
from recipe.model.preparation import prepare_for_training
from recipe.model.speakers import add_speakers, with_speakers
from recipe.model.vocabulary import (
    extend_text_embeddings,
    extend_vocabulary,
    parse_init_map,
    prepare_embeddings_for_training,
)
from recipe.training.arguments import ModelArguments
from recipe.training.callbacks import SpeakerMapCallback
from recipe.voices.lineage import resolve_discriminator
from recipe.voices.speaker_map import model_speaker_order, read_speaker_map, speaker_map

logger = logging.getLogger("run_finetune")


def load_tokenizer(model_args: ModelArguments) -> VitsTokenizer:
    """The tokenizer of `--tokenizer_name`, else of `--model_name_or_path` (`recipe.voices.load_tokenizer`)."""
    name = model_args.tokenizer_name or model_args.model_name_or_path
    if name is None:
        raise ArgumentsError("Give --tokenizer_name (or --model_name_or_path, whose tokenizer is then used)")
    flag = "--tokenizer_name" if model_args.tokenizer_name else "--model_name_or_path"
    try:
        return voices.load_tokenizer(name, revision=model_args.model_revision, token=model_args.token, flag=flag)
    except InputError:  # the recipe's own messages (no such folder, the Hub unreachable) already name the flag
        raise
    except OSError as error:  # transformers' "not a local folder and not a valid model identifier", and the like
        raise ArgumentsError(f"{flag} {name!r}: could not load a tokenizer from it: {error}") from error


def load_model_config(model_args: ModelArguments) -> VitsConfig:
    if model_args.model_name_or_path is not None and model_args.config_name is not None:
        # ModelArguments refuses it at parsing; a ModelArguments changed after that must not lose one silently
        raise ArgumentsError(
            f"Give --model_name_or_path ({model_args.model_name_or_path!r}) or --config_name "
            f"({model_args.config_name!r}), not both"
        )
    if model_args.model_name_or_path is not None:
        try:
            return voices.load_voice_config(
                model_args.model_name_or_path, revision=model_args.model_revision, token=model_args.token
            )
        except InputError:
            raise
        except OSError as error:
            raise ArgumentsError(
                f"--model_name_or_path {model_args.model_name_or_path!r}: could not load a VitsModel config from it: "
                f"{error}"
            ) from error
    if model_args.config_name is not None:
        if not os.path.isfile(model_args.config_name):
            raise MissingInputError(f"--config_name {model_args.config_name}: no such VitsConfig JSON file")
        return voices.load_voice_config(model_args.config_name)
    raise ArgumentsError("Give --model_name_or_path (a VitsModel to fine-tune) or --config_name (a VitsConfig JSON)")


def load_model(model_args: ModelArguments, config: VitsConfig) -> VitsModel:
    if model_args.model_name_or_path is not None:
        return voices.load_voice(
            model_args.model_name_or_path, revision=model_args.model_revision, token=model_args.token
        )
    logger.info(f"Building a randomly initialized VitsModel from {model_args.config_name}")
    return voices.model_from_config(config)


def load_discriminator_config(model_args: ModelArguments) -> DiscriminatorConfig | None:
    name = model_args.discriminator_config_name
    if name is None:
        return None
    if model_args.discriminator != "random":
        raise ArgumentsError(
            f"--discriminator_config_name describes a fresh discriminator; --discriminator is {model_args.discriminator!r}"
        )
    if not os.path.isfile(name):
        raise MissingInputError(f"--discriminator_config_name {name}: no such JSON file")
    with open(name) as handle:
        fields = json.load(handle)
    try:
        return DiscriminatorConfig(**fields)
    except TypeError as error:
        raise ArgumentsError(f"{name}: not a DiscriminatorConfig ({error})") from error


def check_vocabulary(tokenizer, config: VitsConfig) -> None:
    largest_id = max(tokenizer.get_vocab().values())
    if largest_id >= config.vocab_size:
        raise ArgumentsError(
            f"The tokenizer has ids up to {largest_id} but the model's vocab_size is {config.vocab_size}: "
            "they do not belong together (check --tokenizer_name)"
        )


def extend_tokenizer(model_args, data_args, training_args, tokenizer) -> tuple[object, list[str]]:
    """With `--extend_vocabulary`, the tokenizer with the data's new letters and those letters (the main process
    writes `vocabulary_report.json`); otherwise the tokenizer unchanged and no letters."""
    if not model_args.extend_vocabulary:
        return tokenizer, []
    if voices.tokenizer_kind(tokenizer) == "piper_phonemes":
        raise ArgumentsError(
            f"--extend_vocabulary adds letters to a character vocabulary; the tokenizer of "
            f"{model_args.tokenizer_name or model_args.model_name_or_path} ({type(tokenizer).__name__}) maps phonemes "
            "and has no letters to add"
        )
    tokenizer, vocabulary_report = extend_vocabulary(data_args, tokenizer, token=model_args.token)
    if training_args.process_index == 0:
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "vocabulary_report.json"), "w", encoding="utf-8") as f:
            json.dump(vocabulary_report, f, ensure_ascii=False, indent=2)
    return tokenizer, [entry["character"] for entry in vocabulary_report["added"]]


def speakers_for_training(vits: VitsModel, model_args, data_args, train_split) -> tuple[VitsModel, dict | None]:
    """With `--speakers`: the model with one speaker per chosen speaker and the speaker map to save; without, the
    model unchanged and `None`.

    A single-speaker model is made multi-speaker, each speaker id synthesizing as the original until trained
    (`recipe.model.speakers.with_speakers`). A multi-speaker model keeps its speakers and their ids: the features'
    speaker ids follow its map (`prepare_datasets(speaker_order=...)`), and the data's speakers it does not have get
    new rows after its own (`add_speakers`, which leaves the existing rows bit for bit).
    """
    if data_args.speakers is None:
        return vits, None
    names = list(train_split.features["speaker_id"].names)
    seconds: dict[int, float] = {}
    for speaker, length in zip(train_split["speaker_id"], train_split["waveform_length"]):
        seconds[speaker] = seconds.get(speaker, 0.0) + length / vits.config.sampling_rate
    earlier = None
    if vits.config.num_speakers <= 1:
        vits = with_speakers(vits, len(names))
        logger.info(
            f"--speakers {data_args.speakers}: a {len(names)}-speaker model (speaker embeddings of "
            f"{vits.config.speaker_embedding_size}); every speaker id starts as the original voice"
        )
    else:
        earlier = read_speaker_map(model_args.model_name_or_path)
        existing = list(model_speaker_order(model_args.model_name_or_path, vits.config.num_speakers))
        if names[: len(existing)] != existing:
            raise RuntimeError(
                f"The features' speakers {names[:3]}... do not start with the model's {existing[:3]}...: build them "
                "with prepare_datasets(speaker_order=model_speaker_order(...))"
            )
        added = names[len(existing) :]
        if added:
            add_speakers(vits, len(added))
        message = f"--speakers {data_args.speakers}: the model's {len(existing)} speakers keep their ids"
        if added:
            message += f"; {len(added)} new speakers get ids {len(existing)}-{len(names) - 1}"
        silent = [name for index, name in enumerate(existing) if index not in seconds]
        if silent:
            message += (
                f"; {len(silent)} of the model's speakers have no clip here: replay their data "
                "(--replay_dataset_name) so that training for the others does not move their voices"
            )
        logger.info(message)
    return vits, speaker_map(names, seconds, data_args.dataset_name, earlier)


def load_model_for_training(
    model_args, data_args, config, tokenizer, added_characters: list[str], train_split
) -> tuple[VitsModel, list, dict | None]:
    """The model to fine-tune, with its speakers (`--speakers`) and embeddings for the new letters, prepared for
    training; its callbacks (those that keep the original embeddings frozen, `--freeze_original_embeddings`, and the
    one that writes the speaker map into each checkpoint); the speaker map (`None` unless `--speakers`)."""
    vits, speakers = speakers_for_training(load_model(model_args, config), model_args, data_args, train_split)
    new_token_ids = []
    if added_characters:
        new_token_ids = extend_text_embeddings(
            vits, tokenizer, added_characters, parse_init_map(model_args.init_new_tokens_from)
        )
    vits = prepare_for_training(vits, model_args)
    _, embedding_callbacks = prepare_embeddings_for_training(
        vits, new_token_ids, freeze_original=model_args.freeze_original_embeddings
    )
    if speakers is not None:
        embedding_callbacks = [*embedding_callbacks, SpeakerMapCallback(speakers)]
    return vits, embedding_callbacks, speakers


def load_run_discriminator(model_args):
    """The discriminator of `--discriminator`; `auto` (resolved in `model_args`, which the lineage records) is the
    starting folder's discriminator when a previous round saved one."""
    model_args.discriminator = resolve_discriminator(
        model_args.discriminator, model_args.model_name_or_path, model_args.discriminator_config_name
    )
    return load_discriminator(model_args.discriminator, load_discriminator_config(model_args))
