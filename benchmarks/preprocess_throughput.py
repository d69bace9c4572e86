"""Throughput of the data pipeline (`recipe.data.pipeline.prepare_datasets`) against the bare decode + resample +
log-mel loop.

    python benchmarks/preprocess_throughput.py                         # 96 clips per format, 1 and 2 workers
    python benchmarks/preprocess_throughput.py --num_clips 200 --output_json preprocess.json

Generates `--num_clips` clips of `--clip_seconds` s in two layouts, in a temporary folder:
    - `mp3_48k`: a Common Voice folder (`train.tsv`, `dev.tsv`, `clips/*.mp3` at 48 kHz), resampled to 16 kHz;
    - `wav_16k`: an LJSpeech folder (`metadata.csv`, `wavs/*.wav` at 16 kHz), no resampling.
For each layout and each number of workers it times, in the same run:
    - `pipeline`: `prepare_datasets` from the folder to the saved Arrow feature cache (a fresh cache each time), with
      `--preprocessing_num_workers` set to the number of workers;
    - `bare`: only what no pipeline can skip: `common.read_clip` (decode, mono, resample, as `recipe.data` does)
      and `log_mel_spectrogram` per clip, in a loop (1 worker) or a process pool of that many workers.
Reports clips/s, hours of audio per hour of wall time, and the pipeline / bare ratio (target: at most 1.3), then
the time of each part of the pipeline besides the bare work, alone (`pipeline_costs`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    REPO_ROOT,
    format_table,
    machine_description,
    peak_host_memory_mb,
    read_clip,
    write_json,
)

RATIO_TARGET = 1.3
DISTINCT_CLIPS = 8
MODEL_SAMPLING_RATE = 16_000  # MMS-TTS models' rate: what the pipeline resamples to
TOKENIZER_DIR = os.path.join(REPO_ROOT, "demo", "tiny_model")
DEMO_METADATA = os.path.join(REPO_ROOT, "demo", "kmr_ljspeech", "metadata.csv")
FORMATS = {
    # name: (dataset_format, file sampling rate)
    "mp3_48k": ("common_voice", 48_000),
    "wav_16k": ("ljspeech", 16_000),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_clips", type=int, default=96, help="Clips per format (train and eval together).")
    parser.add_argument("--clip_seconds", type=float, default=5.0, help="Duration of every generated clip.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Worker counts to measure.")
    parser.add_argument(
        "--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS), help="Clip layouts to measure."
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="Time each measurement this many times (bare and pipeline alternating) and keep the fastest: other "
        "processes on a shared machine only ever add time.",
    )
    parser.add_argument("--work_dir", default=None, help="Where the clips and caches go; a temporary folder if unset.")
    parser.add_argument("--output_json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    if args.num_clips < 4:
        parser.error(f"--num_clips must be at least 4 (train and eval need clips), not {args.num_clips}")
    if args.clip_seconds <= 0.5:
        parser.error(f"--clip_seconds must be above the pipeline's 0.5 s minimum, not {args.clip_seconds}")
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, not {args.repeats}")
    if any(workers < 1 for workers in args.workers):
        parser.error(f"--workers must be positive, not {args.workers}")
    return args


# -- generated data ---------------------------------------------------------------------------------------------------


def demo_sentences() -> list[str]:
    """The bundled Kurmanji sentences: text the demo tokenizer knows, so that no clip is dropped for its text.

    The last column, with numbers spelled out: a digit is not in the vocabulary, and a clip whose text loses one is
    dropped as `text_not_in_vocabulary`.
    """
    with open(DEMO_METADATA, encoding="utf-8") as handle:
        return [line.rstrip("\n").split("|")[-1] for line in handle if line.strip()]


def speech_like_clip(seconds: float, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A harmonic tone with a wandering pitch, syllable-rate amplitude modulation, breath and room tone (float32, peak < 1).

    Compressed formats spend their time on the signal's content: pure tones or silence would decode faster than
    speech does.
    """
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t + rng.uniform(0, 2 * np.pi)))
    # breath noise that follows the syllables (full band: a voice's spectrum does not stop at its 7th harmonic) over
    # room tone 40 dB under the voice (a steady noise as loud as the breath would drop the clips as `low_snr`)
    noise = rng.standard_normal(t.shape)
    signal = 0.25 * envelope * voiced + (0.02 * envelope + 0.002) * noise
    return (0.9 * signal / np.abs(signal).max()).astype(np.float32)


def write_clips(paths: list[str], seconds: float, sampling_rate: int, **write_kwargs) -> None:
    """`DISTINCT_CLIPS` different signals, then copies of them: MP3 encoding (~80 ms a clip) would dominate the run."""
    rng = np.random.default_rng(0)
    for index, path in enumerate(paths):
        if index < DISTINCT_CLIPS:
            sf.write(path, speech_like_clip(seconds, sampling_rate, rng), sampling_rate, **write_kwargs)
        else:
            shutil.copyfile(paths[index % DISTINCT_CLIPS], path)


def write_common_voice(folder: str, num_clips: int, seconds: float, sampling_rate: int, sentences: list[str]) -> None:
    """`train.tsv` / `dev.tsv` (one eighth of the clips, at least one) and `clips/*.mp3`."""
    os.makedirs(os.path.join(folder, "clips"))
    names = [f"clip_{index:05d}.mp3" for index in range(num_clips)]
    write_clips([os.path.join(folder, "clips", name) for name in names], seconds, sampling_rate)
    rows = []
    for index, name in enumerate(names):
        rows.append({"client_id": "speaker", "path": name, "sentence": sentences[index % len(sentences)]})
    num_dev = max(1, num_clips // 8)
    for split, split_rows in (("train", rows[:-num_dev]), ("dev", rows[-num_dev:])):
        with open(os.path.join(folder, f"{split}.tsv"), "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, ["client_id", "path", "sentence"], delimiter="\t")
            writer.writeheader()
            writer.writerows(split_rows)


def write_ljspeech(folder: str, num_clips: int, seconds: float, sampling_rate: int, sentences: list[str]) -> None:
    """`metadata.csv` (`id|text`) and `wavs/<id>.wav` (16-bit PCM, as LJSpeech ships)."""
    os.makedirs(os.path.join(folder, "wavs"))
    ids = [f"clip_{index:05d}" for index in range(num_clips)]
    write_clips([os.path.join(folder, "wavs", f"{i}.wav") for i in ids], seconds, sampling_rate, subtype="PCM_16")
    lines = [f"{clip_id}|{sentences[index % len(sentences)]}\n" for index, clip_id in enumerate(ids)]
    with open(os.path.join(folder, "metadata.csv"), "w", encoding="utf-8") as handle:
        handle.writelines(lines)


def write_dataset(name: str, folder: str, num_clips: int, seconds: float) -> list[str]:
    """Generate the layout `name` in `folder`; returns the audio file paths."""
    dataset_format, sampling_rate = FORMATS[name]
    writer = write_common_voice if dataset_format == "common_voice" else write_ljspeech
    writer(folder, num_clips, seconds, sampling_rate, demo_sentences())
    audio_dir = os.path.join(folder, "clips" if dataset_format == "common_voice" else "wavs")
    return sorted(os.path.join(audio_dir, file) for file in os.listdir(audio_dir))


# -- the two measurements -------------------------------------------------------------------------------------------


def _one_thread_worker() -> None:
    # as the pipeline's workers do: one process per core, no intra-op threads fighting them
    torch.set_num_threads(1)


def bare_features(path: str) -> int:
    """Decode + resample + log-mel of one clip (the work no pipeline can skip); returns its number of samples."""
    from recipe.audio import log_mel_spectrogram

    spectrogram = _spectrogram_config()
    waveform = read_clip(path, spectrogram.sampling_rate)
    log_mel_spectrogram(torch.from_numpy(waveform), spectrogram)
    return len(waveform)


@functools.lru_cache(maxsize=1)
def _spectrogram_config():
    """The MMS geometry (n_fft 1024, hop 256, 80 mels at 16 kHz), built once per process."""
    from transformers import VitsConfig

    from recipe.audio import SpectrogramConfig

    return SpectrogramConfig.from_model_config(VitsConfig(sampling_rate=MODEL_SAMPLING_RATE))


def time_bare(paths: list[str], workers: int) -> tuple[float, int]:
    """Seconds for the bare loop over `paths` with `workers` processes, and the samples decoded."""
    start = time.perf_counter()
    if workers == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            samples = sum(bare_features(path) for path in paths)
        finally:
            torch.set_num_threads(previous)
    else:
        # fork: the workers start from this process's imports, as datasets.map's workers do
        with multiprocessing.get_context("fork").Pool(workers, initializer=_one_thread_worker) as pool:
            samples = sum(pool.map(bare_features, paths, chunksize=max(1, len(paths) // (4 * workers))))
    return time.perf_counter() - start, samples


def time_pipeline(folder: str, dataset_format: str, workers: int, cache_dir: str, tokenizer, model_config) -> tuple:
    """Seconds for `prepare_datasets` on `folder` with a fresh cache, and its report."""
    from recipe.data.pipeline import prepare_datasets
    from recipe.training.arguments import DataArguments

    data_args = DataArguments(
        dataset_name=folder,
        dataset_format=dataset_format,
        cache_dir=cache_dir,
        preprocessing_num_workers=workers,
        max_duration_in_seconds=30.0,
        # Every generated clip is 5 s of speech-like sound under a demo sentence of any length: their "speaking
        # rates" differ by design. The rate check is a median over the report, no per-clip cost; the detector that
        # trims and measures SNR and bandwidth runs on every clip, as with the defaults.
        max_rate_deviation=0,
    )
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    # the pipeline prints its data report; the benchmark prints its own table instead
    with contextlib.redirect_stdout(io.StringIO()):
        _, report = prepare_datasets(data_args, tokenizer, model_config, os.path.join(cache_dir, "output"))
    return time.perf_counter() - start, report


def _best_of(repeats: int, function) -> float:
    """Fastest of `repeats` timed calls of `function`, in seconds."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def pipeline_costs(args: argparse.Namespace, work_dir: str, tokenizer, model_config) -> dict:
    """Milliseconds per clip of the pipeline's work besides decode + resample + mel, each part timed alone.

    On rows shaped like the pipeline's (a `--clip_seconds` clip at the model's rate, its log-mel, a demo sentence):
        - `text`: `recipe.text.encode_text_with_dropped` (normalize, tokenize, count dropped characters);
        - `table`: `recipe.data.feature_table.rows_to_table` for batches of `recipe.data.features.FEATURE_BATCH_SIZE`
          clips;
        - `write`: writing those tables to an Arrow file as `datasets.map` does (`ArrowWriter.write_table`);
    and `pool_start_ms`, per split: `datasets.map(num_proc=2)` of a function that does nothing, less the same map in
    the main process (forks, the `multiprocess` manager, queue polling and the shard merge).
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    from recipe.audio import SpectrogramConfig
    from recipe.data.feature_table import rows_to_table
    from recipe.data.features import FEATURE_BATCH_SIZE, MIN_CLIPS_PER_WORKER, SCREENING_COLUMNS, feature_types
    from recipe.text import encode_text_with_dropped

    sentences = demo_sentences()
    repeats = max(3, args.repeats)
    text = _best_of(repeats, lambda: [encode_text_with_dropped(s, tokenizer) for s in sentences]) / len(sentences)

    spectrogram = SpectrogramConfig.from_model_config(model_config)
    samples = int(args.clip_seconds * spectrogram.sampling_rate)
    frames = samples // spectrogram.hop_length
    features = feature_types(("speaker",), spectrogram.num_mel_bins)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(FEATURE_BATCH_SIZE):
        normalized, ids, _, count = encode_text_with_dropped(sentences[index % len(sentences)], tokenizer)
        rows.append(
            {
                "input_ids": ids, "waveform": rng.uniform(-0.5, 0.5, samples).astype(np.float32),
                "log_mel": rng.normal(-5, 2, (frames, spectrogram.num_mel_bins)).astype(np.float32),
                "waveform_length": samples, "mel_length": frames, "tokens_length": len(ids), "speaker_id": 0,
                "text": normalized, "path": f"clip_{index}.wav", "drop_reason": "", "dropped_characters": "",
                "num_characters": count, "clipped_fraction": 0.0, "source_text": sentences[index % len(sentences)],
                "speaker": "speaker", **dict.fromkeys(SCREENING_COLUMNS, 0.5),
            }
        )  # fmt: skip
    table = _best_of(repeats, lambda: rows_to_table(rows, features)) / FEATURE_BATCH_SIZE
    batches = max(1, args.num_clips // FEATURE_BATCH_SIZE)
    built = rows_to_table(rows, features)

    def write():
        with ArrowWriter(features=features, path=os.path.join(work_dir, "costs.arrow")) as writer:
            for _ in range(batches):
                writer.write_table(built)
            writer.finalize()

    write_seconds = _best_of(repeats, write) / (batches * FEATURE_BATCH_SIZE)

    numbers = datasets.Dataset.from_dict({"index": list(range(2 * MIN_CLIPS_PER_WORKER))})

    def empty_map(num_proc):
        numbers.map(
            _nothing, batched=True, num_proc=num_proc, load_from_cache_file=False, new_fingerprint=f"costs-{num_proc}"
        )

    pool = _best_of(repeats, lambda: empty_map(2)) - _best_of(repeats, lambda: empty_map(None))
    return {
        "text_ms": 1000 * text,
        "table_ms": 1000 * table,
        "write_ms": 1000 * write_seconds,
        "bytes_per_clip": built.nbytes / FEATURE_BATCH_SIZE,
        "pool_start_ms": 1000 * pool,
    }


def _nothing(batch):
    return {"index": batch["index"]}


def measure(args: argparse.Namespace, work_dir: str) -> tuple[list[dict], dict]:
    import datasets
    from transformers import VitsConfig, VitsTokenizer

    datasets.disable_progress_bars()  # the benchmark prints one table; bars would interleave with it
    tokenizer = VitsTokenizer.from_pretrained(TOKENIZER_DIR)
    model_config = VitsConfig(sampling_rate=MODEL_SAMPLING_RATE)

    rows = []
    for name in args.formats:
        dataset_format, file_rate = FORMATS[name]
        folder = os.path.join(work_dir, name)
        print(f"Generating {args.num_clips} clips of {args.clip_seconds} s ({name}) in {folder}", flush=True)
        paths = write_dataset(name, folder, args.num_clips, args.clip_seconds)
        # warm-up on two clips: imports, soxr and mel-filter set-up, and the page cache are paid before timing
        time_bare(paths[:2], 1)
        time_pipeline(folder, dataset_format, 1, os.path.join(work_dir, "cache-warmup"), tokenizer, model_config)
        for workers in args.workers:
            bare_times, pipeline_times = [], []
            for _ in range(args.repeats):
                bare_seconds, samples = time_bare(paths, workers)
                bare_times.append(bare_seconds)
                cache_dir = os.path.join(work_dir, f"cache-{name}")
                pipeline_seconds, report = time_pipeline(
                    folder, dataset_format, workers, cache_dir, tokenizer, model_config
                )
                pipeline_times.append(pipeline_seconds)
            bare_seconds, pipeline_seconds = min(bare_times), min(pipeline_times)
            kept = report["train"]["kept"] + report["eval"]["kept"]
            if kept != len(paths):
                raise RuntimeError(
                    f"{name}: the pipeline kept {kept} of {len(paths)} generated clips: the comparison with the "
                    f"bare loop would not be like for like (report: {report})"
                )
            audio_seconds = samples / model_config.sampling_rate
            rows.append(
                {
                    "format": name,
                    "file_sampling_rate": file_rate,
                    "workers": workers,
                    "clips": len(paths),
                    "audio_seconds": audio_seconds,
                    "bare_seconds": bare_seconds,
                    "pipeline_seconds": pipeline_seconds,
                    "bare_clips_per_second": len(paths) / bare_seconds,
                    "pipeline_clips_per_second": len(paths) / pipeline_seconds,
                    "bare_audio_hours_per_hour": audio_seconds / bare_seconds,
                    "pipeline_audio_hours_per_hour": audio_seconds / pipeline_seconds,
                    "pipeline_over_bare": pipeline_seconds / bare_seconds,
                    "bare_seconds_all": bare_times,
                    "pipeline_seconds_all": pipeline_times,
                }
            )
            print(
                f"  {name}, {workers} worker(s): pipeline {pipeline_seconds:.2f} s, bare {bare_seconds:.2f} s",
                flush=True,
            )
    return rows, pipeline_costs(args, work_dir, tokenizer, model_config)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="preprocess_throughput_")
    try:
        rows, costs = measure(args, work_dir)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    results = {
        "machine": machine_description(torch.device("cpu")),
        "command": "python " + " ".join([os.path.relpath(__file__, REPO_ROOT), *(argv or sys.argv[1:])]),
        "settings": {
            "num_clips": args.num_clips,
            "clip_seconds": args.clip_seconds,
            "workers": args.workers,
            "repeats": args.repeats,
        },
        "ratio_target": RATIO_TARGET,
        "peak_host_memory_mb": peak_host_memory_mb(),
        "results": rows,
        "pipeline_costs": costs,
    }
    print()
    print(
        format_table(
            rows,
            [
                ("format", "format", ""),
                ("workers", "workers", "d"),
                ("clips", "clips", "d"),
                ("pipeline_clips_per_second", "pipeline clips/s", ".1f"),
                ("bare_clips_per_second", "bare clips/s", ".1f"),
                ("pipeline_audio_hours_per_hour", "pipeline audio h/h", ".0f"),
                ("bare_audio_hours_per_hour", "bare audio h/h", ".0f"),
                ("pipeline_over_bare", "pipeline/bare", ".2f"),
            ],
        )
    )
    bare_ms = min(1000 * row["bare_seconds"] / row["clips"] for row in rows if row["workers"] == 1)
    print(
        f"\nPipeline work besides decode + resample + mel, per {args.clip_seconds:g} s clip (each part alone): text "
        f"{costs['text_ms']:.3f} ms, Arrow table {costs['table_ms']:.3f} ms, writing it "
        f"({costs['bytes_per_clip'] / 1024:.0f} KiB) {costs['write_ms']:.3f} ms; a 2-worker pool "
        f"{costs['pool_start_ms']:.0f} ms per split. The fastest bare loop: {bare_ms:.2f} ms per clip."
    )
    worst = max(row["pipeline_over_bare"] for row in rows)
    verdict = "holds" if worst <= RATIO_TARGET else "FAILS"
    print(f"\nTarget pipeline/bare <= {RATIO_TARGET}: {verdict} (worst {worst:.2f})")
    write_json(results, args.output_json)
    return results


if __name__ == "__main__":
    main()
