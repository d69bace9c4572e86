"""Did fine-tuning help? Synthesize the same sentences with the original and the fine-tuned model and compare.

    python -m recipe.compare --original facebook/mms-tts-kmr-script_latin --finetuned output/ \\
        --references demo/kmr_ljspeech --references_split eval --asr_model facebook/mms-1b-all --output_dir comparison

Per model and sentence: the WAV, amplitude and silence figures, generation time and real-time factor; with
`--references` (a dataset source as `--dataset_name` takes it, whose clips give the texts and recordings): MCD-DTW
and duration ratio against the recording; with `--asr_model`: CER and WER of a speech recognizer's transcription
against the sentence as written (lowercased and without punctuation for scoring, but never romanized: a recognizer
answers in the sentence's own script). Writes `comparison.json`, `original/*.wav`, `finetuned/*.wav`
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
from recipe.evaluation.metrics import amplitude_stats, amplitude_status, duration_ratio, mel_cepstral_distortion
from recipe.evaluation.references import Sentence, format_account, load_references
from recipe.evaluation.report import plot_sentence, write_html_report
from recipe.voices.synthesis import synthesize

logger = logging.getLogger(__name__)

PROG = "python -m recipe.compare"


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
        default=None, metadata={"help": "Speaker index for multi-speaker models (ignored by single-speaker ones)."}
    )
    amplitude_tolerance: float = field(
        default=0.3,
        metadata={
            "help": "Verdict: the fine-tuned mean RMS must be within this share of the original's "
            "(of the recordings' without --original)."
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


def chosen_speaker(args: CompareArguments, models: dict) -> int | None:
    """The speaker the multi-speaker models read with: `--speaker_id`, else 0 (said, with its name from the model's
    `speakers.json`); a single-speaker model ignores it.

    Raises:
        `ArgumentsError`: `--speaker_id` outside a multi-speaker model's speakers (naming them).
    """
    from recipe.voices.speaker_map import read_speaker_map, speaker_names

    for label, model in models.items():
        num_speakers = int(getattr(model.config, "num_speakers", 1))
        if num_speakers <= 1:
            continue
        folder = args.original if label == "original" else args.finetuned
        mapping = read_speaker_map(folder if os.path.isdir(folder) else None)
        names = speaker_names(mapping) if mapping else [str(index) for index in range(num_speakers)]
        if args.speaker_id is not None and not 0 <= args.speaker_id < num_speakers:
            listed = ", ".join(f"{index} ({name})" for index, name in enumerate(names[:5]))
            raise ArgumentsError(
                f"--speaker_id {args.speaker_id}: --{label} {folder} has speakers 0..{num_speakers - 1} "
                f"({listed}{', ...' if num_speakers > 5 else ''})"
            )
        if args.speaker_id is None:
            logger.warning(
                "--%s %s has %d speakers: comparing speaker 0 (%s); --speaker_id picks another",
                label, folder, num_speakers, names[0],
            )  # fmt: skip
            return 0
    return args.speaker_id


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
        keys = [
            key for key, value in rows[0].items() if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        means[label] = {key: float(np.mean([row[key] for row in rows])) for key in keys}
    deltas = {}
    if "original" in means:
        deltas = {
            key: means["finetuned"][key] - means["original"][key]
            for key in means["finetuned"]
            if key in means["original"]
        }
    return {"num_sentences": len(sentences), "means": means, "deltas": deltas}


def _verdict(name: str, passed: bool | None, message: str) -> dict:
    return {"name": name, "status": "SKIP" if passed is None else "PASS" if passed else "FAIL", "message": message}


def verdicts(sentences: list[dict], summary: dict, args: CompareArguments) -> list[dict]:
    """The gate: amplitude kept, no clip mostly silent, intelligibility not worse than the original's by a margin."""
    means = summary["means"]
    results = []

    baseline = "original" if "original" in means else "reference" if "reference" in means else None
    if baseline is None:
        results.append(_verdict("amplitude", None, "no original model and no recordings to compare the RMS with"))
    else:
        rms, reference_rms = means["finetuned"]["rms"], means[baseline]["rms"]
        if reference_rms <= 0:
            results.append(_verdict("amplitude", False, f"the {baseline} mean RMS is 0: nothing to compare with"))
        else:
            status = amplitude_status(rms, reference_rms, args.amplitude_tolerance, args.amplitude_tolerance)
            change = rms / reference_rms - 1
            results.append(
                _verdict(
                    "amplitude",
                    status == "OK",
                    f"fine-tuned mean RMS {rms:.4f} vs {baseline} {reference_rms:.4f} ({change:+.0%}; allowed "
                    f"±{args.amplitude_tolerance:.0%})",
                )
            )

    silent = [s["index"] for s in sentences if s["finetuned"]["silence_ratio"] > args.max_silence_ratio]
    results.append(
        _verdict(
            "silence",
            not silent,
            f"fine-tuned clips with more than {args.max_silence_ratio:.0%} silent frames: "
            + (", ".join(map(str, silent)) if silent else "none"),
        )
    )

    if "cer" not in means["finetuned"]:
        results.append(_verdict("intelligibility", None, "no --asr_model: CER not measured"))
    elif "original" not in means:
        results.append(
            _verdict("intelligibility", None, f"fine-tuned mean CER {means['finetuned']['cer']:.3f}; no original")
        )
    else:
        cer, original_cer = means["finetuned"]["cer"], means["original"]["cer"]
        results.append(
            _verdict(
                "intelligibility",
                cer <= original_cer + args.cer_margin,
                f"fine-tuned mean CER {cer:.3f} vs original {original_cer:.3f} (allowed +{args.cer_margin:.3f})",
            )
        )
    return results


def run_comparison(args: CompareArguments) -> dict:
    """Synthesize, measure, plot and report; returns what `comparison.json` holds."""
    device = resolve_device(args.device)
    os.makedirs(args.output_dir, exist_ok=True)

    # 1. models
    models = {}
    if args.original is not None:
        models["original"] = load_tts(args.original, device, "original")
    models["finetuned"] = load_tts(args.finetuned, device, "finetuned")
    finetuned_model, finetuned_tokenizer = models["finetuned"]
    args.speaker_id = chosen_speaker(args, {label: model for label, (model, _) in models.items()})
    configs = {label: SpectrogramConfig.from_model_config(model.config) for label, (model, _) in models.items()}
    reference_rate = configs["finetuned"].sampling_rate

    # 2. sentences, with recordings when --references gives them and --texts does not replace them
    asr = load_asr(args.asr_model, device) if args.asr_model else None  # fail before the long part
    references, account = [], None
    if args.references:
        references, account = load_references(args, finetuned_tokenizer, finetuned_model.config)
    if args.texts is not None:
        from recipe.text import normalize_text

        # the model reads the normalized text; CER scores against the line as written (its own script, not uroman's);
        # the recordings only set the amplitude baseline
        sentences = [
            Sentence(text=normalize_text(text, finetuned_tokenizer), raw_text=text) for text in read_texts(args.texts)
        ]
        sentences = sentences[: args.max_samples]
    else:
        sentences = references

    # 3. synthesize and measure
    for folder in ["plots", *models] + (["reference"] if any(s.reference is not None for s in sentences) else []):
        os.makedirs(os.path.join(args.output_dir, folder), exist_ok=True)
    records = []
    for index, sentence in enumerate(sentences):
        record = {"index": index, "text": sentence.text, "scoring_text": sentence.scoring_text}
        clips = {}
        if sentence.reference is not None:
            record["reference"] = amplitude_stats(sentence.reference, reference_rate)
            record["reference"]["wav"] = f"reference/{index:03d}.wav"
            write_wav(os.path.join(args.output_dir, record["reference"]["wav"]), sentence.reference, reference_rate)
            clips["reference"] = (sentence.reference, configs["finetuned"])
        for label, (model, tokenizer) in models.items():
            waveform, seconds = synthesize(model, tokenizer, sentence.text, seed=args.seed, speaker_id=args.speaker_id)
            metrics = clip_metrics(waveform, seconds, configs[label], sentence.reference, reference_rate)
            if asr is not None:
                metrics["transcription"] = transcribe(asr, waveform, configs[label].sampling_rate)
                metrics.update(error_rates(sentence.scoring_text, metrics["transcription"]))
            metrics["wav"] = f"{label}/{index:03d}.wav"
            write_wav(os.path.join(args.output_dir, metrics["wav"]), waveform, configs[label].sampling_rate)
            record[label] = metrics
            clips[label] = (waveform, configs[label])
        record["plot"] = f"plots/{index:03d}.png"
        plot_sentence(os.path.join(args.output_dir, record["plot"]), f"{index}. {sentence.text}", clips)
        records.append(record)
    # --texts with --references: no recording of these sentences, but the recordings still give a loudness baseline
    summary = summarize(records, list(models))
    if "reference" not in summary["means"] and references:
        summary["means"]["reference"] = {
            "rms": float(np.mean([amplitude_stats(r.reference, reference_rate)["rms"] for r in references]))
        }

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
        "verdicts": verdicts(records, summary, args),
    }
    comparison["passed"] = all(v["status"] != "FAIL" for v in comparison["verdicts"])
    with open(os.path.join(args.output_dir, "comparison.json"), "w", encoding="utf-8") as handle:
        json.dump(comparison, handle, indent=2, ensure_ascii=False, allow_nan=False)
    write_html_report(os.path.join(args.output_dir, "report.html"), comparison)
    return comparison


def format_summary(comparison: dict) -> str:
    """The lines printed at the end: means per model, deltas, verdicts."""
    summary = comparison["summary"]
    keys = [
        "rms",
        "rms_dbfs",
        "peak",
        "silence_ratio",
        "duration_s",
        "real_time_factor",
        "mcd",
        "duration_ratio",
        "cer",
        "wer",
    ]
    lines = [f"{summary['num_sentences']} sentences"]
    if "references" in comparison:
        lines.append(format_account(comparison["references"]))
    for label, means in summary["means"].items():
        shown = ", ".join(f"{key} {means[key]:.4g}" for key in keys if key in means and math.isfinite(means[key]))
        lines.append(f"{label:>10}: {shown}")
    if summary["deltas"]:
        shown = ", ".join(f"{key} {summary['deltas'][key]:+.4g}" for key in keys if key in summary["deltas"])
        lines.append(f"{'delta':>10}: {shown}")
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
