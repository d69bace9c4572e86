"""The references of `python -m recipe.compare`: which clips `--references_split` picks, damaged clips skipped and
listed rather than stopping the comparison, a cut CBR MP3 seen as `truncated`, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_DIR, REPO_ROOT, make_tiny_config
from test_compare import save_tiny_tts

from recipe.audio import _mpeg_frame_size, decode_audio, mpeg_cut_inside_frame
from recipe.data.audio_screening import AudioScreening, broken_reason
from recipe.data.source import DataError
from recipe.errors import ArgumentsError, run_command
from recipe.evaluation.compare import PROG, CompareArguments, main
from recipe.evaluation.references import load_references
from recipe.hub_access import looks_like_path

LJSPEECH = DEMO_DIR / "kmr_ljspeech"
CUT_CLIP = "KMR-0003"


def references_folder(folder: Path, count: int = 6, cut: tuple[str, ...] = (CUT_CLIP,)) -> Path:
    """The first `count` demo clips as an LJSpeech folder of held-out recordings, the clips `cut` cut to half."""
    (folder / "wavs").mkdir(parents=True)
    lines = (LJSPEECH / "metadata.csv").read_text(encoding="utf-8").splitlines()[:count]
    for line in lines:
        clip_id = line.split("|")[0]
        data = (LJSPEECH / "wavs" / f"{clip_id}.wav").read_bytes()
        (folder / "wavs" / f"{clip_id}.wav").write_bytes(data[: len(data) // 2] if clip_id in cut else data)
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    return save_tiny_tts(tmp_path_factory.mktemp("models") / "finetuned", seed=1)


def account_of(tmp_path, tokenizer, references, **overrides) -> tuple[list, dict]:
    args = CompareArguments(
        finetuned="unused",
        references=str(references),
        cache_dir=str(tmp_path / "cache"),
        output_dir=str(tmp_path / "out"),
        **overrides,
    )
    return load_references(args, tokenizer, make_tiny_config(vocab_size=len(tokenizer)))


def test_a_damaged_reference_is_skipped_and_listed_not_fatal(finetuned, tmp_path, capsys):
    folder = references_folder(tmp_path / "held_out")
    out = tmp_path / "comparison"
    main(["--finetuned", finetuned, "--references", str(folder), "--device", "cpu", "--output_dir", str(out),
          "--cache_dir", str(tmp_path / "cache")])  # fmt: skip
    printed = capsys.readouterr().out
    cut_path = str(folder / "wavs" / f"{CUT_CLIP}.wav")

    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    references = comparison["references"]
    # one clip in six is 17 % broken, over training's 5 %: compare goes on with the other five
    assert references["split"] == "all" and references["clips"] == 6 and references["used"] == 5
    assert references["skipped"] == [{"file": os.path.realpath(cut_path), "reason": "truncated"}]
    assert references["skipped_count"] == {"truncated": 1} and references["not_reached"] == 0
    assert len(comparison["sentences"]) == 5
    assert "References: 5 of 6 used" in printed and f"skipped truncated: {os.path.realpath(cut_path)}" in printed
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "5 of 6 clips used" in page and f"{CUT_CLIP}.wav</td><td>truncated" in page


def test_references_split_picks_the_clips_and_says_how_many(tmp_path, tokenizer):
    folder = references_folder(tmp_path / "held_out")
    # a folder without an eval split is used whole by default; its training split by name is the same clips
    for split in (None, "all", "train"):
        sentences, account = account_of(tmp_path, tokenizer, folder, references_split=split)
        assert (len(sentences), account["used"], account["clips"]) == (5, 5, 6), split
    # `eval`: the 5 % hold-out a training run on the folder would evaluate on, one clip of six, and it says so
    sentences, account = account_of(tmp_path, tokenizer, folder, references_split="eval")
    assert (len(sentences), account["clips"]) == (1, 1)
    assert "5% training holds out of split 'train', 6 clips" in account["description"]
    with pytest.raises(
        ArgumentsError, match=r"--references_split 'dev': .* its splits are \['train'\], or give 'eval'"
    ):
        account_of(tmp_path, tokenizer, folder, references_split="dev")


def test_max_samples_caps_a_whole_split_before_decoding(tmp_path, tokenizer, monkeypatch):
    import recipe.data.features

    featurized = []
    real_featurize = recipe.data.features.featurize
    monkeypatch.setattr(
        recipe.data.features, "featurize", lambda row, **k: featurized.append(row) or real_featurize(row, **k)
    )
    folder = references_folder(tmp_path / "held_out")
    sentences, account = account_of(tmp_path, tokenizer, folder, max_samples=2)
    assert len(sentences) == len(featurized) == 2
    assert (account["used"], account["clips"], account["not_reached"], account["skipped"]) == (2, 6, 4, [])


def test_common_voice_references_default_to_dev_and_all_counts_each_clip_once(tmp_path, tokenizer):
    folder = DEMO_DIR / "kmr_common_voice"
    _, account = account_of(tmp_path, tokenizer, folder, max_samples=1)
    dev_rows = len((folder / "dev.tsv").read_text(encoding="utf-8").splitlines()) - 1
    assert account["split"] == "dev" and account["clips"] == dev_rows
    # validated.tsv lists the clips of train, dev and test again: `all` counts each once
    paths = {
        line.split("\t")[1]
        for name in ("dev", "test", "train", "validated")
        for line in (folder / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    }
    _, account = account_of(tmp_path, tokenizer, folder, max_samples=1, references_split="all")
    assert account["clips"] == len(paths) and account["used"] == 1


def test_no_usable_reference_is_a_clear_data_error(tmp_path, tokenizer):
    folder = references_folder(tmp_path / "held_out", count=2, cut=("KMR-0001", "KMR-0002"))
    with pytest.raises(DataError, match=r"none of its 2 clips \(all: .*\) can be used: truncated 2: .*KMR-0001\.wav"):
        account_of(tmp_path, tokenizer, folder)


def run_compare(*argv: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "recipe.compare", *argv],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_references_of_which_none_is_usable_stop_with_one_line(finetuned, tmp_path):
    folder = references_folder(tmp_path / "held_out", count=2, cut=("KMR-0001", "KMR-0002"))
    result = run_compare("--finetuned", finetuned, "--references", str(folder), "--output_dir", str(tmp_path / "out"),
                         "--cache_dir", str(tmp_path / "cache"), "--device", "cpu")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error:" in line]
    assert re.match(r"python -m recipe.compare: error: --references .*held_out: none of its 2 clips .* can be used: "
                    r"truncated 2: .*KMR-0001.wav, .*KMR-0002.wav", line), line  # fmt: skip


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_such_split", r"--references_split 'dev': .*held_out has no such split; its splits are \['train'\]"),
        ("no_such_folder", r"--finetuned '.*nowhere/model': no such folder or file\."),
    ],
)
def test_a_missing_split_or_model_folder_is_one_line(case, expected, finetuned, tmp_path, capsys):
    """Through `run_command`, as `python -m recipe.compare` runs (the subprocess test above shows it is the same)."""
    folder = references_folder(tmp_path / "held_out", count=2, cut=())
    model = str(tmp_path / "nowhere" / "model") if case == "no_such_folder" else finetuned
    argv = ["--finetuned", model, "--references", str(folder), "--output_dir", str(tmp_path / "out"),
            "--cache_dir", str(tmp_path / "cache"), "--device", "cpu"]  # fmt: skip
    if case == "no_such_split":
        argv += ["--references_split", "dev"]
    assert run_command(PROG, main, argv) == 2
    errors = capsys.readouterr().err
    (line,) = [line for line in errors.splitlines() if "error:" in line]
    assert "Traceback" not in errors and line.startswith(f"{PROG}: error: ") and re.search(expected, line), line
    assert not (tmp_path / "out" / "finetuned").exists()  # stopped before any synthesis


def test_a_value_that_looks_like_a_path_is_not_read_as_a_hub_id():
    for path in ("./model", "/models/vits", "output/", "runs/kmr/checkpoint-500", "~/model"):
        assert looks_like_path(path), path
    for hub_id in ("facebook/mms-tts-kmr-script_latin", "mms-tts", "org/name.v2"):
        assert not looks_like_path(hub_id), hub_id


def test_speaker_id_on_single_speaker_data_says_there_is_one_speaker(tmp_path, tokenizer):
    from recipe.data.pipeline import prepare_datasets
    from recipe.training.arguments import DataArguments

    folder = references_folder(tmp_path / "lj", count=3, cut=())
    data_args = DataArguments(dataset_name=str(folder), cache_dir=str(tmp_path / "cache"), speaker_id="top")
    with pytest.raises(
        DataError, match="has no speaker column, so all of it is one speaker's: leave --speaker_id out"
    ) as error:
        prepare_datasets(data_args, tokenizer, make_tiny_config(vocab_size=len(tokenizer)), str(tmp_path / "out"))
    assert "--speaker_id_column_name" not in str(error.value)  # an LJSpeech folder has no column to name


# --- a cut constant-bitrate MP3 ---------------------------------------------------------------------------------


def cbr_mp3_without_tag(sampling_rate: int = 16000, seconds: float = 3.0) -> bytes:
    """A CBR MP3 as encoders that write no Xing / Info tag make it: libsndfile's, with its Info frame removed."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    time = np.arange(round(sampling_rate * seconds)) / sampling_rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * time) * (1 + 0.5 * np.sin(2 * np.pi * 2 * time))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tone, sampling_rate, format="MP3", compression_level=0.5, bitrate_mode="CONSTANT")
    data = buffer.getvalue()
    first_frame = _mpeg_frame_size(data[:4])  # the frame that holds the tag
    assert b"Info" in data[:first_frame] and not mpeg_cut_inside_frame(data)
    return data[first_frame:]


def test_half_a_cbr_mp3_without_a_frame_count_is_truncated():
    whole = cbr_mp3_without_tag()
    frame = _mpeg_frame_size(whole[:4])
    # at 80 kbit/s and 16 kHz every frame is 360 bytes: a cut on a frame boundary leaves whole frames, not seen
    assert not decode_audio(whole[: frame * (len(whole) // frame // 2)]).cut_inside_frame
    half = whole[: len(whole) // 2 + frame // 3]
    decoded = decode_audio(half)
    # what the header implies is estimated from the size: the decoded and the declared lengths agree on a cut file
    assert decoded.num_frames >= 0.95 * decoded.declared_frames
    assert decoded.cut_inside_frame
    assert broken_reason(decoded, AudioScreening()) == "truncated"
    assert broken_reason(decoded, AudioScreening(truncation_tolerance=1.0)) == ""  # the check turned off
    assert broken_reason(decode_audio(whole), AudioScreening()) == ""
    # a whole file ending in an ID3v1 tag, behind an ID3v2 tag, is whole; cut, it is not
    tagged = b"ID3\x03\x00\x00\x00\x00\x01\x00" + bytes(128) + whole + b"TAG" + bytes(125)
    assert not decode_audio(tagged).cut_inside_frame
    assert decode_audio(tagged[: len(tagged) // 2]).cut_inside_frame


def test_a_cut_mp3_file_on_disk_is_seen_like_its_bytes(tmp_path):
    whole = cbr_mp3_without_tag()
    path = tmp_path / "cut.mp3"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    assert decode_audio(str(path)).cut_inside_frame
    with open(path, "rb") as stream:  # a stream is read again from where decoding started
        assert decode_audio(stream).cut_inside_frame
