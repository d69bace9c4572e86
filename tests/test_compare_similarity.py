"""`python -m recipe.compare` per speaker: a multi-speaker model's speakers each read their own recordings'
sentences, figures per speaker, the speaker-similarity matrix and its verdicts. Tiny random models sound like no
one, so the plumbing runs with an injected embedding function; one test runs the real encoder for the figures."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_DIR, make_tiny_config
from test_compare import save_tiny_tts

import recipe.evaluation.compare
from recipe.errors import run_command
from recipe.evaluation import compare_similarity
from recipe.evaluation.compare import PROG, main
from recipe.evaluation.speaker_plan import SINGLE_SPEAKER, short_name
from recipe.evaluation.speaker_similarity import (
    centroid,
    embed_waveforms,
    missing_message,
    similarity_available,
    similarity_to,
)
from recipe.evaluation.verdicts import speaker_verdicts
from recipe.voices.speaker_map import speaker_map, write_speaker_map

COMMON_VOICE = DEMO_DIR / "kmr_common_voice"


def dev_speakers() -> list[str]:
    """The speakers of the demo's dev split, in its order (one clip each)."""
    with open(COMMON_VOICE / "dev.tsv", encoding="utf-8") as handle:
        return [row["client_id"] for row in csv.DictReader(handle, delimiter="\t")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A single-speaker original and a fine-tune with two of the demo's speakers (its speakers.json names them)."""
    from transformers import VitsModel, VitsTokenizer, set_seed

    root = tmp_path_factory.mktemp("models")
    tokenizer = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model")
    set_seed(3)
    folder = root / "two_speakers"
    VitsModel(make_tiny_config(vocab_size=len(tokenizer), num_speakers=2, speaker_embedding_size=8)).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    write_speaker_map(str(folder), speaker_map(dev_speakers()[:2], None, str(COMMON_VOICE)))
    return {"original": save_tiny_tts(root / "original", seed=0), "two": str(folder)}


def band_embedding(waveforms, sampling_rate):
    """A stand-in encoder: the share of the spectrum's energy in 8 bands (unit norm), a fixed function of the audio."""
    rows = []
    for waveform in waveforms:
        power = np.abs(np.fft.rfft(np.asarray(waveform, dtype=np.float64))) ** 2
        bands = np.array([band.sum() for band in np.array_split(power, 8)]) + 1e-12
        rows.append(bands / np.linalg.norm(bands))
    return np.asarray(rows)


def compare(models, tmp_path, *extra, embed=band_embedding, monkeypatch=None, references=COMMON_VOICE):
    if monkeypatch is not None:
        monkeypatch.setattr(recipe.evaluation.compare, "similarity_embedder", lambda mode: embed)
    out = tmp_path / "comparison"
    status = main(["--original", models["original"], "--finetuned", models["two"], "--references", str(references),
                   "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"), "--device", "cpu", *extra])  # fmt: skip
    return status, json.loads((out / "comparison.json").read_text(encoding="utf-8")), out


def test_each_speaker_reads_its_own_recordings_and_gets_a_row_of_the_matrix(models, tmp_path, monkeypatch, capsys):
    first, second = dev_speakers()[:2]
    status, comparison, out = compare(models, tmp_path, monkeypatch=monkeypatch)
    printed = capsys.readouterr().out

    # the dev split's clips of the model's two speakers; the other two speakers' clips are counted, not compared
    account = comparison["references"]
    assert account["speakers"] == [first, second] and account["other_speakers"] == 2 and account["used"] == 2
    records = comparison["sentences"]
    assert [record["speaker"] for record in records] == [first, second]
    assert all(record["reference"]["speaker"] == record["speaker"] for record in records)
    assert all("mcd" in record["finetuned"] and "mcd" in record["original"] for record in records)

    similarity = comparison["similarity"]
    assert similarity["recordings"] == {first: 1, second: 1}
    for label in ("original", "finetuned"):  # the single-speaker original reads every sentence in its one voice
        assert {row: set(cells) for row, cells in similarity["matrix"][label].items()} == {
            first: {first, second},
            second: {first, second},
        }
    # one clip per speaker: its own figure is the diagonal cell, and the per-speaker row's mean
    for record in records:
        speaker = record["speaker"]
        for label in ("original", "finetuned"):
            cell = similarity["matrix"][label][speaker][speaker]
            assert record[label]["similarity"] == pytest.approx(cell)
            assert comparison["summary"]["speakers"][speaker]["means"][label]["similarity"] == pytest.approx(cell)
    assert comparison["summary"]["speakers"][first]["num_sentences"] == 1

    verdicts = {v["name"]: v for v in comparison["verdicts"]}
    finetuned = similarity["matrix"]["finetuned"]
    for speaker, other in ((first, second), (second, first)):
        expected = "PASS" if finetuned[speaker][speaker] > finetuned[speaker][other] else "FAIL"
        assert verdicts[f"speaker similarity: {short_name(speaker)}"]["status"] == expected
    assert status == (0 if comparison["passed"] else 1)
    assert f"finetuned as {short_name(first)}: {short_name(first)} " in printed
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Speaker similarity</h2>" in page and "<h2>Per speaker" in page


def test_a_voice_that_sounds_like_everyone_fails_every_speaker(models, tmp_path, monkeypatch):
    """An encoder that hears the same voice in every clip: no speaker is closer to its own recordings than to the
    other's, so each one FAILs and the comparison exits with 1."""
    same = lambda waveforms, rate: np.tile([0.6, 0.8], (len(waveforms), 1))  # noqa: E731
    status, comparison, _ = compare(models, tmp_path, embed=same, monkeypatch=monkeypatch)
    speaker_results = [v for v in comparison["verdicts"] if v["name"].startswith("speaker similarity: ")]
    assert [v["status"] for v in speaker_results] == ["FAIL", "FAIL"]
    assert status == 1 and not comparison["passed"]


def test_speaker_id_compares_one_speaker_against_every_trained_speakers_recordings(models, tmp_path, monkeypatch):
    first, second = dev_speakers()[:2]
    _, comparison, _ = compare(models, tmp_path, "--speaker_id", "1", monkeypatch=monkeypatch)
    # speaker 1 reads its own sentence and, as speaker 0 is not compared, speaker 0's too; the recordings of both
    # trained speakers stay columns
    assert [record["speaker"] for record in comparison["sentences"]] == [second, second]
    assert [record["reference"]["speaker"] for record in comparison["sentences"]] == [first, second]
    assert list(comparison["similarity"]["matrix"]["finetuned"]) == [second]
    assert set(comparison["similarity"]["matrix"]["finetuned"][second]) == {first, second}


def test_eval_references_of_a_multi_speaker_model_are_its_per_speaker_hold_out(models, tmp_path, monkeypatch):
    """A source without a dev split: `--references_split eval` gives the clips a `--speakers` run held out of
    each speaker, not the 5 % of the whole training split."""
    from transformers import VitsTokenizer

    from recipe.data.pipeline import prepare_datasets
    from recipe.training.arguments import DataArguments

    folder = tmp_path / "cv"
    shutil.copytree(COMMON_VOICE, folder)
    for name in ("dev.tsv", "test.tsv", "validated.tsv"):
        (folder / name).unlink()
    speakers = dev_speakers()[:2]
    _, comparison, _ = compare(
        models, tmp_path, "--references_split", "eval", monkeypatch=monkeypatch, references=folder
    )
    tokenizer = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model")
    data_args = DataArguments(
        dataset_name=str(folder), cache_dir=str(tmp_path / "cache2"), speakers=",".join(speakers)
    )
    splits, _ = prepare_datasets(
        data_args, tokenizer, make_tiny_config(vocab_size=len(tokenizer)), str(tmp_path / "trained")
    )
    held_out = sorted(splits["eval"]["text"])
    assert sorted(record["text"] for record in comparison["sentences"]) == held_out
    assert {record["speaker"] for record in comparison["sentences"]} == set(speakers)


def test_a_single_speaker_model_has_one_row_original_against_fine_tuned(models, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe.evaluation.compare, "similarity_embedder", lambda mode: band_embedding)
    out = tmp_path / "single"
    finetuned = save_tiny_tts(tmp_path / "finetuned", seed=1)
    main(["--original", models["original"], "--finetuned", finetuned, "--references", str(DEMO_DIR / "kmr_ljspeech"),
          "--max_samples", "3", "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"), "--device", "cpu"])  # fmt: skip
    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    similarity = comparison["similarity"]
    assert similarity["recordings"] == {SINGLE_SPEAKER: 3}
    assert set(similarity["matrix"]) == {"original", "finetuned"}
    assert all(list(rows) == [SINGLE_SPEAKER] for rows in similarity["matrix"].values())
    assert "speakers" not in comparison["summary"] and "speaker" not in comparison["sentences"][0]
    (result,) = [v for v in comparison["verdicts"] if v["name"] == "speaker similarity"]
    figures = {label: rows[SINGLE_SPEAKER][SINGLE_SPEAKER] for label, rows in similarity["matrix"].items()}
    assert result["status"] == ("PASS" if figures["finetuned"] >= figures["original"] - 0.05 else "FAIL")


def test_the_verdict_rules_on_given_matrices():
    def matrix(finetuned, original=None, recordings=("a", "b")):
        cells = {"finetuned": finetuned, **({"original": original} if original else {})}
        return {"matrix": cells, "recordings": dict.fromkeys(recordings, 1)}

    results = speaker_verdicts(
        matrix(
            {"a": {"a": 0.8, "b": 0.6}, "b": {"a": 0.7, "b": 0.65}, "c": {"a": 0.5, "b": 0.5}},
            original={"a": {"a": 0.4, "b": 0.5}},
        ),
        margin=0.05,
    )
    assert [(v["name"], v["status"]) for v in results] == [
        ("speaker similarity: a", "PASS"),
        ("speaker similarity: b", "FAIL"),  # closer to a's recordings than to its own
        ("speaker similarity: c", "SKIP"),  # no recordings of its own
    ]
    assert results[0]["message"] == (
        "0.800 to its own recordings, 0.600 to b's (the closest other); original 0.400 / 0.500"
    )
    (alone,) = speaker_verdicts(matrix({"a": {"a": 0.8}}, recordings=("a",)), margin=0.05)
    assert alone["status"] == "SKIP" and "no other trained speaker" in alone["message"]
    one = SINGLE_SPEAKER
    single = matrix({one: {one: 0.70}}, original={one: {one: 0.74}}, recordings=(one,))
    assert speaker_verdicts(single, margin=0.05)[0]["status"] == "PASS"
    assert speaker_verdicts(single, margin=0.03)[0]["status"] == "FAIL"
    assert speaker_verdicts(matrix({one: {one: 0.7}}, recordings=(one,)), 0.05)[0]["status"] == "SKIP"


def test_without_the_extra_compare_says_so_in_one_line_and_finishes(models, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setattr(compare_similarity, "similarity_available", lambda: False)
    out = tmp_path / "no_extra"
    argv = ["--finetuned", models["two"], "--references", str(COMMON_VOICE), "--output_dir", str(out),
            "--cache_dir", str(tmp_path / "cache"), "--device", "cpu"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        status = run_command(PROG, main, argv)
    assert status in (0, 1)  # finished: no error status
    assert "Traceback" not in capsys.readouterr().err
    lines = [record.getMessage() for record in caplog.records if "similarity" in record.getMessage()]
    assert len(lines) == 1 and 'pip install -e ".[similarity]"' in lines[0]
    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert "similarity" not in comparison
    (result,) = [v for v in comparison["verdicts"] if v["name"].startswith("speaker similarity")]
    assert result == {"name": "speaker similarity", "status": "SKIP", "message": missing_message()}
    # asked for explicitly, its absence is bad input
    assert run_command(PROG, main, [*argv, "--speaker_similarity", "on"]) == 2


def test_the_real_encoder_scores_the_clips_it_was_given(models, tmp_path):
    if not similarity_available():
        pytest.skip("needs the similarity extra")
    first, second = dev_speakers()[:2]
    _, comparison, out = compare(models, tmp_path, "--speaker_similarity", "on")
    matrix = comparison["similarity"]["matrix"]["finetuned"]
    assert all(0.0 <= value <= 1.0 for cells in matrix.values() for value in cells.values())
    # the figure again from the WAVs written (16-bit, so close rather than equal)
    by_speaker = {record["speaker"]: record for record in comparison["sentences"]}
    synthesized = embed_waveforms([sf.read(out / by_speaker[first]["finetuned"]["wav"])[0]], 16000)
    recording = embed_waveforms([sf.read(out / by_speaker[second]["reference"]["wav"])[0]], 16000)
    assert similarity_to(synthesized, centroid(recording)) == pytest.approx(matrix[first][second], abs=0.02)
