"""`export_voice`: a model folder to a runtime's folder, checked against the model before it is written.

Order: everything that can be refused is refused before any file is written (the format, the output folder, the
model folder, a vocabulary the runtime cannot express); then the graph and the runtime's files go to a hidden
staging folder, the runtime synthesizes a check text from there, and only an export whose audio matches
`VitsModel`'s is renamed into `output_dir`.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass

import numpy as np

from recipe.export import onnx_layout, piper_layout, sherpa_layout
from recipe.export.characters import character_vocabulary, check_text
from recipe.export.check import MAX_ABS_DIFFERENCE, compare, reference_waveform
from recipe.export.dependencies import require
from recipe.export.errors import ExportError
from recipe.export.graph import export_graph
from recipe.export.output import check_output_dir, publish, staging_folder
from recipe.export.phonemes import CHECK_TEXT as PHONEME_CHECK_TEXT
from recipe.export.quantize import QUANTIZATIONS, quantize_int8
from recipe.export.readme import write_readme
from recipe.text import pre_vocabulary_text
from recipe.voices.lineage import read_lineage
from recipe.voices.loading import tokenizer_kind
from recipe.voices.speaker_map import read_speaker_map, write_speaker_map

FORMATS = {"piper": piper_layout, "sherpa-onnx": sherpa_layout, "onnx": onnx_layout}


@dataclass
class ExportResult:
    """What `export_voice` wrote and measured.

    Args:
        output_dir (`str`): the exported folder.
        graph_path (`str`): its ONNX graph.
        graph_bytes (`int`): the graph's size.
        check (`dict`): the parity check (see `recipe.export.check.compare`), with `text` and `runtime_text`.
    """

    output_dir: str
    graph_path: str
    graph_bytes: int
    check: dict


def load_model_folder(model_dir: str):
    """The model and tokenizer of `model_dir` through `recipe.voices`, or an error that says why there are none.

    Raises:
        `ExportError` for a path that is not a folder, a folder without `config.json`, a config that is not VITS,
        or weights / tokenizer that do not load.
    """
    from recipe.voices import load_tokenizer, load_voice

    if not os.path.isdir(model_dir):
        raise ExportError(f"{model_dir} is not a model folder: no such directory")
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ExportError(f"{model_dir} is not a model folder: it has no config.json")
    try:
        with open(config_path, encoding="utf-8") as handle:
            model_type = json.load(handle).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise ExportError(f"{model_dir} is not a model folder: its config.json does not read ({error})") from error
    if model_type != "vits":
        raise ExportError(f"{model_dir} holds a {model_type!r} model, not a VITS voice")
    try:
        model = load_voice(model_dir)
        tokenizer = load_tokenizer(model_dir)
    except (OSError, ValueError) as error:
        raise ExportError(f"{model_dir}: the voice or its tokenizer does not load ({error})") from error
    return model.eval(), tokenizer


def default_check_text(tokenizer) -> str:
    """Every character of a character model's vocabulary (`recipe.export.characters.check_text`), or a sentence for
    an imported Piper voice (`recipe.export.phonemes.CHECK_TEXT`).

    Raises:
        `ExportError` for another kind of tokenizer: give a check text.
    """
    kind = tokenizer_kind(tokenizer)
    if kind == "piper_phonemes":
        return PHONEME_CHECK_TEXT
    if kind != "characters":
        raise ExportError(f"No default check text for a {type(tokenizer).__name__}: pass --check_text")
    return check_text(character_vocabulary(tokenizer))


def _int8_figures(waveform: np.ndarray, reference: np.ndarray, model) -> dict:
    """MCD and RMS level of the int8 export against the model (both must be finite and long enough for a mel)."""
    from recipe.audio import SpectrogramConfig
    from recipe.evaluation.metrics import amplitude_stats, mel_cepstral_distortion

    if not np.all(np.isfinite(waveform)):
        raise ExportError("The int8 graph produces non-finite samples")
    spectrogram_config = SpectrogramConfig.from_model_config(model.config)
    rate = int(model.config.sampling_rate)
    return {
        "mcd": mel_cepstral_distortion(waveform, reference, spectrogram_config),
        "rms_dbfs": amplitude_stats(waveform, rate)["rms_dbfs"],
        "reference_rms_dbfs": amplitude_stats(reference, rate)["rms_dbfs"],
    }


def export_command(model_dir: str, export_format: str, output_dir: str, quantize: str | None, text: str | None) -> str:
    """The `python -m recipe.export` command line for these arguments."""
    parts = ["python", "-m", "recipe.export", model_dir, "--format", export_format, "--output_dir", output_dir]
    if quantize:
        parts += ["--quantize", quantize]
    if text is not None:
        parts += ["--check_text", text]
    return shlex.join(parts)


def export_voice(
    model_dir: str,
    export_format: str,
    output_dir: str,
    quantize: str | None = None,
    text: str | None = None,
) -> ExportResult:
    """Export the voice in `model_dir` for a runtime, check it there against the model, and write `output_dir`.

    Args:
        model_dir (`str`): a model folder this recipe loads (`recipe.voices.load_voice`).
        export_format (`str`): `piper`, `sherpa-onnx` or `onnx`.
        output_dir (`str`): the folder to create (absent or empty).
        quantize (`str`, *optional*): `"int8"` for int8 weights.
        text (`str`, *optional*): the check text; by default every character of a character model's vocabulary, or
            a sentence for an imported Piper voice.

    Returns:
        `ExportResult`.

    Raises:
        `ExportError` naming the cause (see `recipe.export.errors.ExportError`); `output_dir` is then left as it was.
        `ImportError` naming `pip install -e ".[export]"` when a runtime is missing.
    """
    if export_format not in FORMATS:
        raise ExportError(f"Unknown format {export_format!r}: choose one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ExportError(f"Unknown quantization {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}")
    layout = FORMATS[export_format]
    check_output_dir(output_dir)
    for module in layout.REQUIRES + (("onnxruntime.quantization",) if quantize else ()):
        require(module)
    model, tokenizer = load_model_folder(model_dir)
    lineage = read_lineage(model_dir)
    spec = layout.prepare(model, tokenizer)
    speakers = read_speaker_map(model_dir)
    if speakers is not None and "speaker_id_map" in spec.get("voice_config", {}):
        # Piper's map from speaker names to ids: the names the data gave them
        spec["voice_config"]["speaker_id_map"] = {entry["name"]: entry["id"] for entry in speakers["speakers"]}
    check_input = default_check_text(tokenizer) if text is None else text
    # several speakers, the last among them, so that a graph reading the wrong speaker embedding cannot pass by luck
    num_speakers = model.config.num_speakers
    speaker_ids = sorted({0, num_speakers // 2, num_speakers - 1}) if num_speakers > 1 else [None]
    try:
        references = {
            speaker: reference_waveform(model, tokenizer, check_input, speaker)[0] for speaker in speaker_ids
        }
    except ValueError as error:  # e.g. a check text of which the vocabulary keeps nothing
        raise ExportError(f"The check text {check_input!r} cannot be synthesized by the model: {error}") from error
    # what a user of the runtime types: NFC, and romanized for a uroman model (the README's command does it)
    runtime_text = pre_vocabulary_text(check_input, tokenizer)

    with staging_folder(output_dir) as staging:
        graph_path = os.path.join(staging, layout.GRAPH_FILE)
        if quantize:
            float_path = os.path.join(staging, "float32.onnx")
            export_graph(model, float_path, with_lengths=layout.WITH_LENGTHS, input_stage=spec.get("input_stage"))
            quantize_int8(float_path, graph_path)
            os.remove(float_path)
        else:
            export_graph(model, graph_path, with_lengths=layout.WITH_LENGTHS, input_stage=spec.get("input_stage"))
        layout.write(staging, spec)
        if speakers is not None:
            write_speaker_map(staging, speakers)
        runtime = layout.load_runtime(staging, num_threads=1)
        waveforms = {speaker: runtime(runtime_text, speaker) for speaker in speaker_ids}
        checks = {speaker: compare(waveforms[speaker], references[speaker]) for speaker in speaker_ids}
        # the speaker the runtime reproduces least well stands for all
        speaker_id = max(
            speaker_ids, key=lambda speaker: (not checks[speaker]["passed"], checks[speaker]["max_abs_difference"])
        )
        waveform, reference = waveforms[speaker_id], references[speaker_id]
        check = {
            **checks[speaker_id],
            "text": check_input,
            "runtime_text": runtime_text,
            "speaker_id": speaker_id,
            "speaker_ids_checked": speaker_ids if num_speakers > 1 else [],
        }
        if quantize:
            check.update(_int8_figures(waveform, reference, model))
        elif not check["passed"]:
            raise ExportError(
                f"The {export_format} export does not reproduce the model for {check_input!r}: "
                f"{check['samples']} samples against {check['reference_samples']}, max abs difference "
                f"{check['max_abs_difference']:.3g} (tolerance {MAX_ABS_DIFFERENCE:g}); nothing was written"
            )
        graph_bytes = os.path.getsize(graph_path)
        write_readme(
            staging,
            export_format=export_format,
            model_dir=model_dir,
            command=export_command(model_dir, export_format, output_dir, quantize, text),
            usage=layout.usage(spec),
            check=check,
            graph_file=layout.GRAPH_FILE,
            graph_bytes=graph_bytes,
            quantize=quantize,
            lineage=lineage,
        )
        publish(staging, output_dir)
    return ExportResult(
        output_dir=output_dir,
        graph_path=os.path.join(output_dir, layout.GRAPH_FILE),
        graph_bytes=graph_bytes,
        check=check,
    )
