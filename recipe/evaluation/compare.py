"""Did fine-tuning help? Synthesize the same sentences with the original and the fine-tuned model and compare.

    python -m recipe.compare --original facebook/mms-tts-kmr-script_latin --finetuned output/ \\
        --references demo/kmr_ljspeech --references_split eval --asr_model facebook/mms-1b-all --output_dir comparison

Per model and sentence: the WAV, amplitude and silence figures, generation time and real-time factor; with
`--references` (a dataset source as `--dataset_name` takes it, whose clips give the texts and recordings): MCD-DTW
and duration ratio against the recording; with `--asr_model`: CER and WER of a speech recognizer's transcription
against the sentence as written (lowercased and without punctuation for scoring, but never romanized: a recognizer
answers in the sentence's own script); with `--references` and the `similarity` extra: speaker similarity
(`recipe.evaluation.compare_similarity`). A multi-speaker model is compared per speaker, each reading its own
recordings' sentences (`recipe.evaluation.speaker_plan`), with a verdict per speaker: closer to its own recordings
than to any other trained speaker's (`recipe.evaluation.verdicts`). Writes `comparison.json`, `original/*.wav`, `finetuned/*.wav`
(`reference/*.wav`), `plots/*.png` and `report.html` into `--output_dir`, prints the verdict lines, and exits with
status 1 when a verdict fails, so that a pipeline can gate on it; with status 2 and one line
`python -m recipe.compare: error: MESSAGE` for bad input (`recipe.errors.run_command`).

`--references_split` chooses the recordings (`recipe.evaluation.references`): `eval`, the eval split training holds
out (as above, of the training folder itself); `all`, every clip; or a split name. The default is the source's own
eval split when it declares one (dev / validation), else `all`: a folder without one is taken for a folder of
held-out recordings, meant to be used whole. A damaged or unusable reference clip is skipped and listed (file and
reason) in `comparison.json`, the report and the printed "N of M used" line; only references of which no clip is
usable stop the comparison.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import soundfile as sf
import torch
from transformers import HfArgumentParser

from recipe.audio import SpectrogramConfig, resample
from recipe.errors import ArgumentsError, InputError, MissingInputError, RaisesArgumentsError, help_epilog
from recipe.evaluation.asr import error_rates, load_asr, transcribe
from recipe.evaluation.compare_similarity import (
    SIMILARITY_MODES,
    SimilarityScoring,
    format_similarity,
    recording_columns,
    similarity_embedder,
)
from recipe.evaluation.metrics import (
    amplitude_stats,
    duration_ratio,
    mel_cepstral_distortion,
    rate_ratios,
    speaking_rate,
)
from recipe.evaluation.references import Sentence, format_account, load_references
from recipe.evaluation.report import plot_sentence, write_html_report
from recipe.evaluation.speaker_plan import (
    SINGLE_SPEAKER,
    Reader,
    compared_speakers,
    model_speaker_names,
    readers_of,
    short_name,
)
from recipe.evaluation.speaker_similarity import missing_message
from recipe.evaluation.verdicts import LEVEL_REFERENCES, ORIGINAL_LEVEL, RECORDINGS_LEVEL, verdicts
from recipe.voices.synthesis import synthesize

logger = logging.getLogger(__name__)

PROG = "python -m recipe.compare"
# The figures printed per speaker of a multi-speaker model: level, silence, distance to the recording, CER, likeness
SPEAKER_KEYS = ("rms", "silence_ratio", "mcd", "cer", "similarity")
# The means printed per model
SUMMARY_KEYS = ("rms", "rms_dbfs", "peak", "silence_ratio", "duration_s", "real_time_factor", "speaking_rate")
SUMMARY_KEYS += ("mcd", "duration_ratio", "cer", "wer", "similarity")


@dataclass
class CompareArguments:
    finetuned: str = field(metadata={"help": "The fine-tuned model: a folder or Hub id of a VitsModel + tokenizer."})
    original: str | None = field(default=None, metadata={"help": "The model it started from (folder or Hub id)."})
    texts: str | None = field(
        default=None,
        metadata={
            "help": "A UTF-8 file with one sentence a line. Default: the texts of the eval split of --references."
        },
    )
    references: str | None = field(
        default=None,
        metadata={"help": "Recordings to compare against: a dataset source as --dataset_name takes it."},
    )
    references_format: str = field(
        default="auto",
        metadata={
            "help": "The layout of --references, as --dataset_format takes it (run_finetune.py --help lists them)."
        },
    )
    references_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration (e.g. 'kmr')."})
    references_split: str | None = field(
        default=None,
        metadata={
            "help": "Which clips of --references: 'eval' (the eval split training holds out: the source's dev "
            "split, else 5%% of its training split), 'all' (every clip) or a split name. Default: the source's own "
            "eval split when it declares one, else 'all', since a folder of held-out recordings is meant to be "
            "used whole."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where the reference features are cached (as --cache_dir of training)."}
    )
    asr_model: str | None = field(
        default=None,
        metadata={"help": "Folder or Hub id of a transformers speech-recognition model (Whisper, MMS) for CER / WER."},
    )
    output_dir: str = field(default="comparison", metadata={"help": "Where every output is written."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampled noise of every synthesis."})
    device: str = field(default="auto", metadata={"help": "auto (cuda when available) | cpu | cuda | cuda:N."})
    max_samples: int | None = field(
        default=50, metadata={"help": "Compare at most this many sentences (the first ones); empty for all."}
    )
    speaker_id: int | None = field(
        default=None,
        metadata={
            "help": "Compare this speaker of a multi-speaker model alone (default: every speaker, each reading its "
            "own recordings' sentences; ignored by single-speaker models)."
        },
    )
    speaker_similarity: str = field(
        default="auto",
        metadata={
            "help": "Speaker similarity of the synthesis to the recordings of --references (Resemblyzer's speaker "
            "encoder, the `similarity` extra): auto (when the extra is installed; one line says so when not), on "
            "(stop when it is missing) or off."
        },
    )
    similarity_margin: float = field(
        default=0.05,
        metadata={
            "help": "Verdict of a single-speaker model: the fine-tuned speaker similarity may be this much below "
            "the original's."
        },
    )
    amplitude_tolerance: float = field(
        default=0.3,
        metadata={
            "help": "Verdict: the fine-tuned mean RMS must be within this share of the level --level_reference names."
        },
    )
    level_reference: str = field(
        default=ORIGINAL_LEVEL,
        metadata={
            "help": "What the amplitude verdict judges the fine-tuned level against: 'original' (the original "
            "model's mean RMS; the recordings' without --original) or 'recordings' (the mean RMS of --references: "
            "for a voice adapted to a new speaker, whose level is the recordings', not the original's)."
        },
    )
    max_silence_ratio: float = field(
        default=0.5, metadata={"help": "Verdict: no fine-tuned clip may have more than this share of silent frames."}
    )
    cer_margin: float = field(
        default=0.05, metadata={"help": "Verdict: the fine-tuned mean CER may exceed the original's by this much."}
    )

    def __post_init__(self):
        if self.texts is None and self.references is None:
            raise ValueError("Nothing to synthesize: give --texts (one sentence a line) or --references (a dataset)")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"--max_samples must be positive, not {self.max_samples}")
        if self.amplitude_tolerance < 0 or not 0 <= self.max_silence_ratio <= 1 or self.cer_margin < 0:
            raise ValueError(
                "Need --amplitude_tolerance >= 0, 0 <= --max_silence_ratio <= 1 and --cer_margin >= 0, got "
                f"{self.amplitude_tolerance}, {self.max_silence_ratio} and {self.cer_margin}"
            )
        if self.level_reference not in LEVEL_REFERENCES:
            raise ValueError(
                f"--level_reference must be one of {', '.join(LEVEL_REFERENCES)}, not {self.level_reference!r}"
            )
        if self.level_reference == RECORDINGS_LEVEL and self.references is None:
            raise ValueError("--level_reference recordings needs --references: the recordings whose level it is")
        if self.speaker_similarity not in SIMILARITY_MODES or self.similarity_margin < 0:
            raise ValueError(
                f"Need --speaker_similarity in {', '.join(SIMILARITY_MODES)} and --similarity_margin >= 0, got "
                f"{self.speaker_similarity!r} and {self.similarity_margin}"
            )


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tts(name_or_path: str, device: torch.device, role: str):
    """A `VitsModel` in eval mode on `device` and its tokenizer; the error names the flag and the path.

    Raises:
        `MissingInputError`: a value that looks like a path names no folder (`recipe.hub_access`: saying so beats
            relaying the Hub's rules for repository ids); `UnavailableError`: a Hub id with the Hub unreachable;
            `ArgumentsError`: nothing loadable there.
    """
    from recipe.voices import load_tokenizer, load_voice

    flag = f"--{role}"
    try:
        model = load_voice(name_or_path, flag=flag)
        tokenizer = load_tokenizer(name_or_path, flag=flag)
    except InputError:
        raise
    except (OSError, ValueError) as error:
        raise ArgumentsError(
            f"--{role} {name_or_path!r}: could not load a VitsModel and its tokenizer from it: {error}"
        ) from error
    return model.to(device).eval(), tokenizer


def read_texts(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 file."""
    if not os.path.isfile(path):
        raise MissingInputError(f"--texts {path}: no such file")
    with open(path, encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()]
    if not texts:
        raise ArgumentsError(f"--texts {path} holds no sentence")
    return texts


def write_wav(path: str, waveform: np.ndarray, sampling_rate: int) -> None:
    # 16-bit PCM plays in every browser; metrics are computed on the float samples before this clipping
    sf.write(path, np.clip(waveform, -1.0, 1.0), sampling_rate, subtype="PCM_16")


def clip_metrics(
    waveform: np.ndarray,
    generation_seconds: float,
    spectrogram_config: SpectrogramConfig,
    reference: np.ndarray | None,
    reference_rate: int,
) -> dict:
    """Amplitude figures, timing and, against a recording, MCD-DTW and duration ratio of one synthesized clip."""
    sampling_rate = spectrogram_config.sampling_rate
    metrics = amplitude_stats(waveform, sampling_rate)
    metrics["generation_seconds"] = generation_seconds
    metrics["real_time_factor"] = generation_seconds / metrics["duration_s"]
    if reference is not None:
        reference = resample(reference, reference_rate, sampling_rate)
        metrics["mcd"] = mel_cepstral_distortion(waveform, reference, spectrogram_config)
        metrics["duration_ratio"] = duration_ratio(len(waveform), len(reference))
    return metrics


def summarize(sentences: list[dict], labels: list[str]) -> dict:
    """Means of every numeric metric per model (and for the recordings), and fine-tuned minus original deltas."""
    means = {}
    for label in ["reference", *labels]:
        rows = [sentence[label] for sentence in sentences if label in sentence]
        if not rows:
            continue
        # over the clips that have the figure (a clip without speech has no speaking rate)
        keys = dict.fromkeys(
            key
            for row in rows
            for key, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        )
        means[label] = {key: float(np.mean([row[key] for row in rows if key in row])) for key in keys}
    deltas = {}
    if "original" in means:
        deltas = {
            key: means["finetuned"][key] - means["original"][key]
            for key in means["finetuned"]
            if key in means["original"]
        }
    return {"num_sentences": len(sentences), "means": means, "deltas": deltas}


def _speaker_rows(records: list[dict], labels: list[str], readers: list[Reader]) -> dict:
    """Per compared speaker of a multi-speaker model, the summary of the clips read as it."""
    if [reader.name for reader in readers] == [SINGLE_SPEAKER]:
        return {}
    rows = {}
    for reader in readers:
        mine = [record for record in records if record["speaker"] == reader.name]
        if mine:
            rows[reader.name] = summarize(mine, [label for label in labels if any(label in r for r in mine)])
    return rows


def _measure(args, index, sentence, reader, models, configs, asr, scoring, reference_rate) -> tuple[dict, dict]:
    """One record: `sentence` synthesized as `reader` by each model that has that speaker, measured and written;
    and the clips to plot."""
    record = {"index": index, "text": sentence.text, "scoring_text": sentence.scoring_text}
    if reader.name != SINGLE_SPEAKER:
        record["speaker"] = reader.name
    clips = {}
    if sentence.reference is not None:
        record["reference"] = amplitude_stats(sentence.reference, reference_rate)
        record["reference"].update(speaking_rate(sentence.scoring_text, sentence.reference, reference_rate))
        record["reference"]["wav"] = f"reference/{index:03d}.wav"
        if sentence.speaker is not None:
            record["reference"]["speaker"] = sentence.speaker
        write_wav(os.path.join(args.output_dir, record["reference"]["wav"]), sentence.reference, reference_rate)
        clips["reference"] = (sentence.reference, configs["finetuned"])
    for label, (model, tokenizer) in models.items():
        if label not in reader.ids:
            continue  # the original has no such speaker
        rate = configs[label].sampling_rate
        waveform, seconds = synthesize(model, tokenizer, sentence.text, seed=args.seed, speaker_id=reader.ids[label])
        metrics = clip_metrics(waveform, seconds, configs[label], sentence.reference, reference_rate)
        metrics.update(speaking_rate(sentence.scoring_text, waveform, rate))
        if "speaking_rate" in metrics and "speaking_rate" in record.get("reference", {}):
            metrics["rate_ratio"] = metrics["speaking_rate"] / record["reference"]["speaking_rate"]
        if asr is not None:
            metrics["transcription"] = transcribe(asr, waveform, rate)
            metrics.update(error_rates(sentence.scoring_text, metrics["transcription"]))
        if scoring is not None and (figure := scoring.add(label, reader.name, waveform, rate)) is not None:
            metrics["similarity"] = figure
        metrics["wav"] = f"{label}/{index:03d}.wav"
        write_wav(os.path.join(args.output_dir, metrics["wav"]), waveform, rate)
        record[label] = metrics
        clips[label] = (waveform, configs[label])
    return record, clips


def run_comparison(args: CompareArguments) -> dict:
    """Synthesize, measure, plot and report; returns what `comparison.json` holds."""
    device = resolve_device(args.device)
    os.makedirs(args.output_dir, exist_ok=True)

    # 1. models, and the speakers compared (`recipe.evaluation.speaker_plan`)
    models = {}
    if args.original is not None:
        models["original"] = load_tts(args.original, device, "original")
    models["finetuned"] = load_tts(args.finetuned, device, "finetuned")
    finetuned_model, finetuned_tokenizer = models["finetuned"]
    folders = {"original": args.original, "finetuned": args.finetuned}
    readers = compared_speakers(args, {label: model for label, (model, _) in models.items()}, folders)
    model_speakers = model_speaker_names(finetuned_model, args.finetuned)
    configs = {label: SpectrogramConfig.from_model_config(model.config) for label, (model, _) in models.items()}
    reference_rate = configs["finetuned"].sampling_rate

    # 2. sentences, with recordings when --references gives them and --texts does not replace them
    asr = load_asr(args.asr_model, device) if args.asr_model else None  # fail before the long part
    # without recordings there is no voice to compare with: the encoder is loaded only for them (or to check `on`)
    wants_encoder = args.references is not None or args.speaker_similarity == "on"
    embed = similarity_embedder(args.speaker_similarity) if wants_encoder else None
    references, account = [], None
    if args.references:
        speakers = tuple(model_speakers) if model_speakers else None
        references, account = load_references(args, finetuned_tokenizer, finetuned_model.config, speakers)
    if args.texts is not None:
        from recipe.text import normalize_text

        # the model reads the normalized text; CER scores against the line as written (its own script, not uroman's);
        # the recordings only set the amplitude baseline and the speakers' voices
        sentences = [
            Sentence(text=normalize_text(text, finetuned_tokenizer), raw_text=text) for text in read_texts(args.texts)
        ]
        sentences = sentences[: args.max_samples]
    else:
        sentences = references
    columns = recording_columns(references, model_speakers) if embed is not None else {}
    scoring = SimilarityScoring(embed, columns, reference_rate) if columns else None

    # 3. synthesize and measure
    for folder in ["plots", *models] + (["reference"] if any(s.reference is not None for s in sentences) else []):
        os.makedirs(os.path.join(args.output_dir, folder), exist_ok=True)
    records = []
    for sentence in sentences:
        for reader in readers_of(sentence.speaker, readers):
            index = len(records)
            record, clips = _measure(args, index, sentence, reader, models, configs, asr, scoring, reference_rate)
            record["plot"] = f"plots/{index:03d}.png"
            title = f"{index}. {sentence.text}" + (
                f" ({short_name(record['speaker'])})" if "speaker" in record else ""
            )
            plot_sentence(os.path.join(args.output_dir, record["plot"]), title, clips)
            records.append(record)
    # --texts with --references: no recording of these sentences, but the recordings still give a loudness baseline
    summary = summarize(records, list(models))
    if "reference" not in summary["means"] and references:
        recorded = [speaking_rate(r.scoring_text, r.reference, reference_rate) for r in references]
        summary["means"]["reference"] = {
            "rms": float(np.mean([amplitude_stats(r.reference, reference_rate)["rms"] for r in references])),
            "speaking_rate": float(np.mean([r["speaking_rate"] for r in recorded if "speaking_rate" in r])),
        }
    if ratios := rate_ratios(summary["means"]):
        summary["rate_ratio"] = ratios
    if speaker_rows := _speaker_rows(records, list(models), readers):
        summary["speakers"] = speaker_rows
    similarity = scoring.result() if scoring is not None else None
    note = (
        "--speaker_similarity off" if args.speaker_similarity == "off"
        else "no --references: no recordings to compare the voices with" if not args.references
        else missing_message() if embed is None
        else "no recordings of a trained speaker in --references to compare the voices with"
    )  # fmt: skip

    # 4. verdicts and outputs
    comparison = {
        "arguments": asdict(args),
        "sources": {
            label: source
            for label, source in (
                ("original", args.original),
                ("finetuned", args.finetuned),
                ("references", args.references),
            )
            if source is not None
        },
        "models": list(models),
        **({"references": account} if account is not None else {}),
        "sentences": records,
        "summary": summary,
        **({"similarity": similarity} if similarity is not None else {}),
        "verdicts": verdicts(records, summary, args, similarity, note),
    }
    comparison["passed"] = all(v["status"] != "FAIL" for v in comparison["verdicts"])
    with open(os.path.join(args.output_dir, "comparison.json"), "w", encoding="utf-8") as handle:
        json.dump(comparison, handle, indent=2, ensure_ascii=False, allow_nan=False)
    write_html_report(os.path.join(args.output_dir, "report.html"), comparison)
    return comparison


def format_summary(comparison: dict) -> str:
    """The lines printed at the end: means per model, deltas, verdicts."""
    summary = comparison["summary"]
    keys = SUMMARY_KEYS
    lines = [f"{summary['num_sentences']} sentences"]
    if "references" in comparison:
        lines.append(format_account(comparison["references"]))
    for label, means in summary["means"].items():
        shown = ", ".join(f"{key} {means[key]:.4g}" for key in keys if key in means and math.isfinite(means[key]))
        lines.append(f"{label:>10}: {shown}")
    if summary["deltas"]:
        shown = ", ".join(f"{key} {summary['deltas'][key]:+.4g}" for key in keys if key in summary["deltas"])
        lines.append(f"{'delta':>10}: {shown}")
    if summary.get("rate_ratio"):
        shown = ", ".join(f"{label} {ratio:.3f}" for label, ratio in summary["rate_ratio"].items())
        lines.append(f"speaking rate / the recordings': {shown}")
    for speaker, rows in summary.get("speakers", {}).items():
        # per speaker, the figures a voice is judged by
        for label, means in rows["means"].items():
            shown = ", ".join(f"{key} {means[key]:.4g}" for key in SPEAKER_KEYS if key in means)
            lines.append(f"{short_name(speaker):>15} {label:>9}: {shown}")
    lines += format_similarity(comparison.get("similarity"))
    lines += [f"{v['status']} {v['name']}: {v['message']}" for v in comparison["verdicts"]]
    return "\n".join(lines)


class CompareArgumentParser(RaisesArgumentsError, HfArgumentParser):
    """`HfArgumentParser` over `CompareArguments` whose mistakes raise `ArgumentsError` (one line), not a usage dump."""

    def __init__(self):
        super().__init__(CompareArguments, prog=PROG, epilog=help_epilog(PROG))

    def parse(self, argv: list[str]) -> CompareArguments:
        """`CompareArguments` from flags, or from one JSON file.

        Raises:
            `ArgumentsError`: an unknown flag or key, a value of the wrong type or one `CompareArguments` refuses, a
                file that is not JSON. `MissingInputError`: no such JSON file.
        """
        try:
            if len(argv) == 1 and argv[0].endswith(".json"):
                if not os.path.isfile(argv[0]):
                    raise MissingInputError(f"{argv[0]}: no such arguments file")
                (args,) = self.parse_json_file(os.path.abspath(argv[0]))
            else:
                (args,) = self.parse_args_into_dataclasses(args=argv)
        except ArgumentsError:
            raise
        except ValueError as error:
            # CompareArguments refusing a value, or a JSON file that is not valid JSON or holds unknown keys
            raise ArgumentsError(str(error)) from error
        return args


def main(argv: list[str] | None = None) -> int:
    """Compare and report; returns 0 when every verdict passes, 1 when one fails. Bad input raises an `InputError`
    (`ArgumentsError`, `MissingInputError`, `DataError`, `AsrUnavailableError`), which `run_command` reports."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = CompareArgumentParser().parse(sys.argv[1:] if argv is None else argv)
    comparison = run_comparison(args)
    print(format_summary(comparison))
    print(f"Report: {os.path.join(args.output_dir, 'report.html')}")
    return 0 if comparison["passed"] else 1
