"""The figures behind the audio screening defaults (`recipe.data.audio_screening`): what real and damaged clips measure.

    python scripts/measure_audio_screening.py                      # the bundled demo clips and generated ones
    python scripts/measure_audio_screening.py --folders my_data/wavs

For every clip of the `--folders` (default: the bundled `demo/kmr_ljspeech/wavs` and `demo/kmr_common_voice/clips`)
and for generated clips (`benchmarks/preprocess_throughput.speech_like_clip`, 5 s, written as 16 kHz WAV / FLAC /
OGG and 48 kHz MP3 by soundfile), it prints the range of:
    - decoded / declared frames (`recipe.audio.decode_audio`): 1 for a whole file;
    - the same for each file cut to half its bytes (an interrupted download);
    - the loudest 50 ms frame in dBFS (`silent` below `--silence_threshold_db`);
    - the share of samples at full scale (`clipped` above `--max_clipped_fraction`);
and the share at full scale of the first bundled clip amplified (hard-clipped) by 1.5, 2, 4 and 8, as WAV and MP3.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np
import soundfile as sf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

from preprocess_throughput import speech_like_clip  # noqa: E402

from recipe.audio import AudioDecodeError, decode_audio, to_mono  # noqa: E402
from recipe.data.audio_screening import measure_levels  # noqa: E402

DEMO_FOLDERS = ("demo/kmr_ljspeech/wavs", "demo/kmr_common_voice/clips")
GENERATED = (("WAV", "PCM_16", 16_000), ("FLAC", "PCM_16", 16_000), ("OGG", "VORBIS", 16_000), ("MP3", None, 48_000))
GAINS = (1.5, 2, 4, 8)


def encode(samples: np.ndarray, sampling_rate: int, file_format: str, subtype: str | None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sampling_rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def measure(data: bytes, name: str) -> dict:
    """Figures of one encoded file: whole, and cut to half its bytes."""
    decoded = decode_audio(data, name)
    levels = measure_levels(decoded.samples, to_mono(decoded.samples), decoded.sampling_rate)
    try:
        cut = decode_audio(data[: len(data) // 2], name)
        cut_ratio = cut.num_frames / cut.declared_frames if cut.declared_frames else float("nan")
    except AudioDecodeError:
        cut_ratio = float("nan")  # the decoder refuses the cut file: a decode_error, not a truncated clip
    return {
        "ratio": decoded.num_frames / decoded.declared_frames if decoded.declared_frames else float("nan"),
        "cut_ratio": cut_ratio,
        "loudest_db": levels.loudest_frame_db,
        "clipped": levels.clipped_fraction,
    }


def summarize(label: str, rows: list[dict]) -> None:
    print(f"{label} ({len(rows)} clips)")
    for key, meaning in (
        ("ratio", "decoded / declared frames"),
        ("cut_ratio", "the same, cut to half its bytes (nan: refused by the decoder)"),
        ("loudest_db", "loudest 50 ms frame, dBFS"),
        ("clipped", "share of samples at full scale"),
    ):
        values = np.array([row[key] for row in rows], dtype=np.float64)
        refused = int(np.isnan(values).sum())
        finite = values[~np.isnan(values)]
        shown = f"{finite.min():.4f} .. {finite.max():.4f}" if len(finite) else "-"
        print(f"  {meaning:<64} {shown}" + (f" ({refused} nan)" if refused else ""))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", nargs="+", default=[os.path.join(REPO_ROOT, f) for f in DEMO_FOLDERS])
    args = parser.parse_args(argv)

    first_clip = None
    for folder in args.folders:
        paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
        if not paths:
            raise SystemExit(f"{folder} holds no file")
        first_clip = first_clip or paths[0]
        rows = []
        for path in paths:
            with open(path, "rb") as handle:
                rows.append(measure(handle.read(), path))
        summarize(folder, rows)

    rng = np.random.default_rng(0)
    for file_format, subtype, sampling_rate in GENERATED:
        clips = [speech_like_clip(5.0, sampling_rate, rng) for _ in range(4)]
        rows = [measure(encode(clip, sampling_rate, file_format, subtype), "generated") for clip in clips]
        summarize(f"generated {file_format} {subtype or ''} {sampling_rate} Hz", rows)

    decoded = decode_audio(first_clip)
    mono = to_mono(decoded.samples)
    print(f"{first_clip} amplified and hard-clipped: share of samples at full scale")
    for gain in GAINS:
        loud = np.clip(mono * gain, -1, 1).astype(np.float32)
        shares = []
        for file_format, subtype in (("WAV", "PCM_16"), ("MP3", None)):
            again = decode_audio(encode(loud, decoded.sampling_rate, file_format, subtype))
            shares.append(
                f"{file_format} {measure_levels(again.samples, to_mono(again.samples), 1).clipped_fraction:.4f}"
            )
        print(f"  x{gain:<4} {', '.join(shares)}")


if __name__ == "__main__":
    main()
