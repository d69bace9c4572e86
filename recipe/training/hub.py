"""The model card and the Hub upload of a fine-tuned model.

`build_model_card` writes the card (YAML metadata through `huggingface_hub.ModelCardData`, then the figures of the
run); `push_to_hub` uploads the model, its tokenizer, the card and, when asked, the discriminator, with one
`HfApi.create_repo` and one `HfApi.upload_folder` whose `allow_patterns` list exactly the files to send.
"""

from __future__ import annotations

import fnmatch
import os
import re

from huggingface_hub import HfApi, ModelCard, ModelCardData

from recipe.piper.decoder import is_resblock2_config_dict

CARD_FILE = "README.md"
# What a `VitsModel` / `VitsTokenizer` folder holds (save_pretrained), i.e. what `from_pretrained` needs.
MODEL_PATTERNS = ("config.json", "generation_config.json", "model.safetensors", "model-*.safetensors", "*.index.json")
TOKENIZER_PATTERNS = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
# The discriminator (recipe.model.discriminator.save_discriminator): only sent when asked, for further fine-tuning.
DISCRIMINATOR_PATTERNS = ("discriminator*", "discriminator/*")
# Hub ids are `name` or `owner/name`; anything else (a local folder) is not put in the `datasets` metadata.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
MODEL_ID_PLACEHOLDER = "<this model id>"
# How to load and run the model: transformers' pipeline, except for a type-2 Piper decoder, which transformers lacks
# and which the saved config.json makes transformers refuse by design (recipe.piper.decoder)
TRANSFORMERS_USE = f"""```python
from transformers import pipeline

tts = pipeline("text-to-speech", model="{MODEL_ID_PLACEHOLDER}")
speech = tts("...")
```"""
RECIPE_USE = f"""Its decoder has Piper's type-2 residual blocks, which `transformers` does not implement: \
`pipeline("text-to-speech")` and `VitsModel.from_pretrained` refuse it. Load it with the recipe that trained it:

```python
from recipe.voices import load_tokenizer, load_voice
from recipe.voices.synthesis import synthesize

model, tokenizer = load_voice("{MODEL_ID_PLACEHOLDER}"), load_tokenizer("{MODEL_ID_PLACEHOLDER}")
waveform, seconds = synthesize(model, tokenizer, "...")  # float32 samples at model.config.sampling_rate
```"""


def _format_loss_table(final_losses: dict) -> str:
    if not final_losses:
        return "No loss was recorded."
    rows = ["| loss | value |", "| --- | --- |"]
    rows += [f"| {name} | {float(value):.4f} |" for name, value in final_losses.items()]
    return "\n".join(rows)


def _format_amplitude(amplitude_status) -> str:
    if amplitude_status is None:
        return "The amplitude monitor did not run."
    if isinstance(amplitude_status, str):
        return f"Last amplitude-monitor status: **{amplitude_status}**."
    status = amplitude_status.get("status")
    line = f"Last amplitude-monitor status: **{status}**"
    last = amplitude_status.get("last_evaluation") or amplitude_status
    if "rms" in last and "reference_rms" in last:
        line += (
            f" (synthesized RMS {last['rms']:.4f} vs {last['reference_rms']:.4f} for the eval recordings, "
            f"peak {last.get('peak', float('nan')):.3f}, at step {last.get('step')})"
        )
    return line + "."


def _format_lineage(lineage: list[dict]) -> str:
    keys = list(dict.fromkeys(key for entry in lineage for key in entry))
    rows = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    rows += ["| " + " | ".join(str(entry.get(key, "")) for key in keys) + " |" for entry in lineage]
    return "\n".join(rows)


def build_model_card(
    base_model: str,
    dataset_name: str,
    hours_of_audio: float,
    steps: int,
    final_losses: dict,
    amplitude_status,
    language: str | None = None,
    lineage: list[dict] | None = None,
    model_config: dict | None = None,
    speakers: dict | None = None,
) -> str:
    """The README.md of a fine-tuned model: Hub metadata and the figures of the run.

    Args:
        base_model (`str`): the model fine-tuned from (a Hub id, or a local folder).
        dataset_name (`str`): the training data (a Hub id, or a local folder: only its name is shown).
        hours_of_audio (`float`): hours of training audio after filtering.
        steps (`int`): optimizer steps trained.
        final_losses (`dict`): final value of each loss component, e.g. `{"mel": 21.3, "kl": 1.2}`.
        amplitude_status (`str` or `dict`, *optional*): the monitor's last status ("OK" / "WARNING" /
            "CRITICAL"), or the content of an `amplitude_status.json`.
        language (`str`, *optional*): ISO code of the language (e.g. "kmr").
        lineage (`list[dict]`, *optional*): earlier fine-tunes this model descends from, oldest first, each a
            dict of what to show (e.g. `{"model": ..., "dataset": ..., "steps": ...}`).
        model_config (`dict`, *optional*): the model's saved `config.json`; for a type-2 Piper decoder the card's
            "Use" section loads it with `recipe.voices.load_voice` instead of `transformers.pipeline`.
        speakers (`dict`, *optional*): the speaker map of a multi-speaker model (`recipe.voices.speaker_map`): the
            card lists the speakers and how to choose one.

    Returns:
        `str`: the card, YAML front matter (`library_name: transformers`, `pipeline_tag: text-to-speech`,
        `base_model`, tags) then Markdown.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if hours_of_audio < 0:
        raise ValueError(f"hours_of_audio must be >= 0, got {hours_of_audio}")
    is_local_base = os.path.exists(base_model)
    is_local_data = os.path.exists(dataset_name) or not _HUB_ID.match(dataset_name)
    dataset_label = os.path.basename(os.path.normpath(dataset_name)) if is_local_data else dataset_name
    card_data = ModelCardData(
        language=language,
        library_name="transformers",
        pipeline_tag="text-to-speech",
        # metadata that points at a local folder would be an invalid Hub reference
        base_model=None if is_local_base else base_model,
        datasets=None if is_local_data else [dataset_name],
        tags=["vits", "mms", "text-to-speech", "fine-tuned"],
    )
    base_label = f"[{base_model}](https://huggingface.co/{base_model})" if not is_local_base else f"`{base_model}`"
    sections = [
        f"# VITS fine-tuned from {os.path.basename(os.path.normpath(base_model)) if is_local_base else base_model}",
        f"This model is {base_label} fine-tuned on **{dataset_label}** ({hours_of_audio:.2f} hours of audio) "
        f"for {steps} steps with the VITS objectives (mel reconstruction, KL, duration, adversarial).",
        "## Use\n\n" + (RECIPE_USE if model_config and is_resblock2_config_dict(model_config) else TRANSFORMERS_USE),
        "## Final losses\n\n" + _format_loss_table(final_losses),
        "## Loudness check\n\n" + _format_amplitude(amplitude_status),
    ]
    if speakers:
        sections.append("## Speakers\n\n" + _format_speakers(speakers))
    if lineage:
        sections.append("## Lineage\n\n" + _format_lineage(lineage))
    return str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"))


def files_to_upload(output_dir: str, include_discriminator: bool = False) -> list[str]:
    """Paths, relative to `output_dir`, that `push_to_hub` uploads: model, tokenizer, card, maybe discriminator.

    Checkpoints, optimizer states, logs and data reports are left out.
    """
    if not os.path.isdir(output_dir):
        raise FileNotFoundError(f"No model folder at {output_dir}")
    present = []
    for root, _, files in os.walk(output_dir):
        relative_root = os.path.relpath(root, output_dir)
        if relative_root.split(os.sep)[0].startswith(("checkpoint-", "runs")):
            continue
        present += [os.path.normpath(os.path.join(relative_root, name)).replace(os.sep, "/") for name in files]

    def matching(patterns):
        return sorted(path for path in present if any(fnmatch.fnmatchcase(path, p) for p in patterns))

    model_files = matching(MODEL_PATTERNS)
    if "config.json" not in model_files or not any(path.endswith(".safetensors") for path in model_files):
        raise FileNotFoundError(
            f"{output_dir} holds no saved model (config.json and model safetensors); found {sorted(present)}"
        )
    tokenizer_files = matching(TOKENIZER_PATTERNS)
    if "vocab.json" not in tokenizer_files:
        raise FileNotFoundError(f"{output_dir} holds no tokenizer (vocab.json); found {sorted(present)}")
    selected = model_files + tokenizer_files + matching([CARD_FILE])
    if include_discriminator:
        discriminator_files = matching(DISCRIMINATOR_PATTERNS)
        if not discriminator_files:
            raise FileNotFoundError(f"include_discriminator is set but {output_dir} holds no discriminator files")
        selected += discriminator_files
    return sorted(set(selected))


def push_to_hub(
    output_dir: str,
    hub_model_id: str,
    card_text: str,
    include_discriminator: bool = False,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload fine-tuned VITS model",
) -> str:
    """Write the card to `<output_dir>/README.md` and upload model, tokenizer and card (and the discriminator).

    Args:
        output_dir (`str`): the final model folder (`save_for_inference` output plus tokenizer).
        hub_model_id (`str`): `owner/name` of the Hub repository (created if missing).
        card_text (`str`): the model card (`build_model_card`).
        include_discriminator (`bool`, *optional*, defaults to `False`): also upload the discriminator so that
            others can continue adversarial fine-tuning.
        token (`str`, *optional*): Hub token; the cached login when `None`.
        private (`bool`, *optional*, defaults to `False`): create the repository as private.
        commit_message (`str`, *optional*): message of the upload commit.

    Returns:
        `str`: the repository id the files were uploaded to.
    """
    if not card_text.strip():
        raise ValueError("card_text is empty: build it with recipe.training.hub.build_model_card")
    with open(os.path.join(output_dir, CARD_FILE), "w", encoding="utf-8") as f:
        f.write(card_text)
    files = files_to_upload(output_dir, include_discriminator)
    api = HfApi(token=token)
    repo_id = api.create_repo(hub_model_id, private=private, exist_ok=True).repo_id
    # Exact relative paths as allow_patterns: the upload holds these files and nothing else.
    api.upload_folder(repo_id=repo_id, folder_path=output_dir, allow_patterns=files, commit_message=commit_message)
    return repo_id


def _format_speakers(speakers: dict) -> str:
    rows = "\n".join(
        f"| {entry['id']} | {entry['name']} | {entry.get('train_minutes', 0):.1f} |" for entry in speakers["speakers"]
    )
    return (
        'Choose a speaker with `forward_params={"speaker_id": k}` in the pipeline (`tts(text, forward_params='
        '{"speaker_id": 0})`), `speaker_id=k` in `VitsModel.forward`; `speakers.json` holds this table.\n\n'
        f"| speaker_id | name in the data | training minutes |\n| --- | --- | --- |\n{rows}"
    )
