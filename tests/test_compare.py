"""`python -m recipe.compare` on two tiny random models: every output, the verdict's exit status, ASR plumbing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import DEMO_DIR, make_tiny_config

from recipe.evaluation.asr import error_rates
from recipe.evaluation.compare import main

TEXTS = "Roj baş.\nSpas.\n"


def save_tiny_tts(folder, seed: int, quiet: bool = False) -> str:
    from transformers import VitsModel, VitsTokenizer, set_seed

    tokenizer = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model")
    set_seed(seed)
    model = VitsModel(make_tiny_config(vocab_size=len(tokenizer)))
    if quiet:  # a fine-tune that collapsed to near-silence: the output layer scaled down 1000 times
        with torch.no_grad():
            for parameter in model.decoder.conv_post.parameters():
                parameter.mul_(1e-3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def save_tiny_asr(folder) -> str:
    """A random wav2vec2 CTC model with a character vocabulary: it transcribes garbage, enough for the plumbing."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyzêîûçş")}}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "original": save_tiny_tts(root / "original", seed=0),
        "finetuned": save_tiny_tts(root / "finetuned", seed=1),
        "quiet": save_tiny_tts(root / "quiet", seed=0, quiet=True),
        "asr": save_tiny_asr(root / "asr"),
    }


@pytest.fixture
def texts_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text(TEXTS, encoding="utf-8")
    return str(path)


def test_end_to_end_with_references_and_asr_writes_every_output(models, tmp_path, capsys):
    out = tmp_path / "comparison"
    status = main(
        [
            "--original", models["original"],
            "--finetuned", models["finetuned"],
            "--references", str(DEMO_DIR / "kmr_ljspeech"),
            "--references_split", "eval",
            "--asr_model", models["asr"],
            "--max_samples", "2",
            "--device", "cpu",
            "--output_dir", str(out),
            "--cache_dir", str(tmp_path / "cache"),
            "--speaker_similarity", "off",  # tests/test_compare_similarity.py
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out

    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    sentences = comparison["sentences"]
    # the demo's eval split (fixed hold-out seed), capped at 2 sentences
    assert [sentence["text"] for sentence in sentences] == ["zarok li baxçe dilîzin", "şev baş xewa xweş"]
    for sentence in sentences:
        for label in ("reference", "original", "finetuned"):
            wave, rate = sf.read(out / sentence[label]["wav"])
            assert rate == 16000 and len(wave) > 0
        for label in ("original", "finetuned"):
            clip = sentence[label]
            assert clip["mcd"] > 0 and clip["duration_ratio"] > 0
            # the random ASR model transcribes garbage: its error rates are those of that garbage against the text
            assert clip["transcription"]
            assert {"cer": clip["cer"], "wer": clip["wer"]} == error_rates(
                sentence["scoring_text"], clip["transcription"]
            )
            assert clip["cer"] > 1
            assert clip["real_time_factor"] == pytest.approx(clip["generation_seconds"] / clip["duration_s"])
        assert (out / sentence["plot"]).stat().st_size > 0
    summary = comparison["summary"]
    assert set(summary["means"]) == {"reference", "original", "finetuned"}
    for key in ("rms", "mcd", "cer", "wer", "duration_ratio"):
        assert summary["deltas"][key] == pytest.approx(
            summary["means"]["finetuned"][key] - summary["means"]["original"][key]
        )
    assert [v["name"] for v in comparison["verdicts"]] == [
        "amplitude", "silence", "intelligibility", "speaker similarity"
    ]  # fmt: skip
    # seeded synthesis and a seeded ASR model: RMS +14% (allowed 30%), no silent clip, CER 17.9 vs 60.7
    assert [v["status"] for v in comparison["verdicts"]] == ["PASS", "PASS", "PASS", "SKIP"]
    assert comparison["verdicts"][-1]["message"] == "--speaker_similarity off" and "similarity" not in comparison
    assert comparison["passed"] and status == 0
    for verdict in comparison["verdicts"]:
        assert f"{verdict['status']} {verdict['name']}" in printed

    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<audio") == 3 * len(sentences)
    assert page.count("<img") == len(sentences)
    assert "MCD (Kubichek, DTW)" in page and "CER" in page


def test_same_model_twice_passes_with_zero_deltas(models, texts_file, tmp_path):
    out = tmp_path / "same"
    status = main(["--original", models["original"], "--finetuned", models["original"], "--texts", texts_file,
                   "--output_dir", str(out)])  # fmt: skip
    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert status == 0 and comparison["passed"]
    assert len(comparison["sentences"]) == 2
    assert comparison["summary"]["deltas"]["rms"] == 0.0
    # no recordings: no speaker similarity, whether or not the extra is installed
    assert [v["status"] for v in comparison["verdicts"]] == ["PASS", "PASS", "SKIP", "SKIP"]
    original, finetuned = (sf.read(out / label / "000.wav")[0] for label in ("original", "finetuned"))
    np.testing.assert_array_equal(original, finetuned)  # seeded synthesis is deterministic
    assert os.path.isfile(out / "report.html") and os.path.isfile(out / "plots" / "001.png")
    assert not (out / "reference").exists()


def test_a_fine_tune_gone_quiet_fails_with_exit_status_1(models, texts_file, tmp_path):
    out = tmp_path / "quiet"
    status = main(["--original", models["original"], "--finetuned", models["quiet"], "--texts", texts_file,
                   "--output_dir", str(out)])  # fmt: skip
    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    verdicts = {v["name"]: v for v in comparison["verdicts"]}
    assert status == 1 and not comparison["passed"]
    assert verdicts["amplitude"]["status"] == "FAIL"
    assert verdicts["silence"]["status"] == "FAIL"  # RMS ~1e-3 is below -40 dBFS in every frame


def test_missing_asr_model_is_named_before_synthesis(models, texts_file, tmp_path):
    from recipe.evaluation.asr import AsrUnavailableError

    missing = str(tmp_path / "no-such-asr")
    with pytest.raises(AsrUnavailableError, match="no-such-asr"):
        main(["--finetuned", models["finetuned"], "--texts", texts_file, "--asr_model", missing,
              "--output_dir", str(tmp_path / "o")])  # fmt: skip
    assert not (tmp_path / "o" / "finetuned").exists()


def test_bad_inputs_are_named(models, tmp_path):
    with pytest.raises(ValueError, match="--texts .* or --references"):
        main(["--finetuned", models["finetuned"], "--output_dir", str(tmp_path)])
    # a path that names no folder is said to be one, not checked against the Hub's rules for repository ids
    with pytest.raises(FileNotFoundError, match="--finetuned '.*nowhere': no such folder"):
        main(["--finetuned", str(tmp_path / "nowhere"), "--texts", __file__, "--output_dir", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        main(
            [
                "--finetuned",
                models["finetuned"],
                "--texts",
                str(tmp_path / "missing.txt"),
                "--output_dir",
                str(tmp_path),
            ]
        )


def test_cer_of_an_is_uroman_model_is_scored_against_the_sentence_in_its_own_script(tmp_path, monkeypatch):
    """The model reads uroman's Latin transcription, the recognizer answers in Cyrillic: score against the Cyrillic."""
    from transformers import VitsModel, VitsTokenizer, set_seed

    import recipe.evaluation.compare
    import recipe.text

    folder = tmp_path / "uroman_model"
    tokenizer = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model", is_uroman=True)
    set_seed(0)
    VitsModel(make_tiny_config(vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    texts = tmp_path / "texts.txt"
    texts.write_text("Привет, мир!\n", encoding="utf-8")
    # a stand-in for uroman (no package, no tables) for the one sentence; the recognizer answers in its own script
    monkeypatch.setattr(recipe.text, "romanize", lambda text: text.replace("Привет, мир!", "Privet, mir!"))
    monkeypatch.setattr(recipe.evaluation.compare, "load_asr", lambda name, device: "asr")
    monkeypatch.setattr(recipe.evaluation.compare, "transcribe", lambda asr, waveform, rate: "привет мир")

    out = tmp_path / "comparison"
    main(["--finetuned", str(folder), "--texts", str(texts), "--asr_model", "any-asr", "--output_dir", str(out)])
    (sentence,) = json.loads((out / "comparison.json").read_text(encoding="utf-8"))["sentences"]
    assert sentence["text"] == "privet mir"  # what the model read
    assert sentence["scoring_text"] == "Привет, мир!"
    assert sentence["finetuned"]["cer"] == 0.0 and sentence["finetuned"]["wer"] == 0.0


def test_references_featurize_the_eval_split_alone(tmp_path, monkeypatch):
    from transformers import VitsTokenizer

    import recipe.data.features
    from recipe.evaluation.compare import CompareArguments, load_references

    featurized = []
    real_featurize = recipe.data.features.featurize
    monkeypatch.setattr(
        recipe.data.features, "featurize", lambda row, **k: featurized.append(row) or real_featurize(row, **k)
    )
    tokenizer = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model")
    args = CompareArguments(
        finetuned="unused",
        references=str(DEMO_DIR / "kmr_ljspeech"),
        references_split="eval",
        cache_dir=str(tmp_path / "cache"),
        output_dir=str(tmp_path / "out"),
    )
    sentences, account = load_references(args, tokenizer, make_tiny_config(vocab_size=len(tokenizer)))
    # the LJSpeech folder has no eval split: its 5 % hold-out is decoded, the training clips are not
    assert 0 < len(sentences) == len(featurized) < 5
    assert account["used"] == account["clips"] == len(sentences) and "32 clips" in account["description"]
    assert all(sentence.reference is not None and sentence.text for sentence in sentences)
    # speech recognition is scored against the sentence as the metadata writes it, not the model's normalized text
    written = {
        text
        for line in (DEMO_DIR / "kmr_ljspeech" / "metadata.csv").read_text(encoding="utf-8").splitlines()
        for text in line.split("|")[1:]
    }
    for sentence in sentences:
        assert sentence.scoring_text in written and sentence.scoring_text != sentence.text
