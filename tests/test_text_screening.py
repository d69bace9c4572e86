"""Text that loses letters or digits to the tokenizer: the clip is dropped with what it lost, too many such clips stop
the run before any audio is decoded, `--keep_clips_with_dropped_characters` keeps them, and `--extend_vocabulary`
adds letters only."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_DIR

import recipe.data.features
import recipe.data.pipeline
from recipe.data.pipeline import DataError, prepare_datasets
from recipe.data.text_screening import lost_characters
from recipe.model.vocabulary import extend_vocabulary
from recipe.training.arguments import DataArguments

LJSPEECH = DEMO_DIR / "kmr_ljspeech"


def demo_with_texts(folder: Path, texts: dict[int, str]) -> Path:
    """The 32 demo clips in an LJSpeech folder of their own, with the text of line `i` replaced by `texts[i]`."""
    shutil.copytree(LJSPEECH, folder)
    lines = (folder / "metadata.csv").read_text(encoding="utf-8").splitlines()
    for index, text in texts.items():
        lines[index] = f"{lines[index].split('|')[0]}|{text}"
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def args(folder: Path, tmp_path: Path, **overrides) -> DataArguments:
    return DataArguments(dataset_name=str(folder), eval_fraction=0.125, cache_dir=str(tmp_path / "cache"), **overrides)


def dropped(report: dict) -> dict[str, str]:
    """Clip file name -> the characters its text lost, over both splits."""
    found = {}
    for split in report.values():
        entry = split["dropped"]["text_not_in_vocabulary"]
        found.update(zip((Path(path).name for path in entry["examples"]), entry["lost_characters"]))
    return found


def test_lost_characters_are_letters_and_digits_not_punctuation():
    assert lost_characters("ş2,.!ñ ½\u0302") == "ş2ñ½\u0302"
    assert lost_characters(",.?!- ") == ""


def test_a_clip_whose_text_loses_a_digit_or_letter_is_dropped_with_what_it_lost(tmp_path, tokenizer, model_config):
    folder = demo_with_texts(tmp_path / "lj", {0: "Ez 2 sêvan dixwim.", 1: "Señor, roj baş!"})
    features, report = prepare_datasets(
        args(folder, tmp_path, max_text_not_in_vocabulary_fraction=0.1), tokenizer, model_config, str(tmp_path)
    )
    assert dropped(report) == {"KMR-0001.wav": "2", "KMR-0002.wav": "ñ"}
    assert sum(split["dropped"]["text_not_in_vocabulary"]["count"] for split in report.values()) == 2
    kept = list(features["train"]["path"]) + list(features["eval"]["path"])
    assert len(kept) == 30 and not {"KMR-0001.wav", "KMR-0002.wav"} & {Path(path).name for path in kept}
    printed = recipe.data.pipeline.format_report(report)
    assert "KMR-0001.wav ('2')" in printed and "KMR-0002.wav ('ñ')" in printed

    # --keep_clips_with_dropped_characters: today's behaviour, the characters deleted from the text the model reads
    features, report = prepare_datasets(
        args(folder, tmp_path, keep_clips_with_dropped_characters=True), tokenizer, model_config, str(tmp_path)
    )
    assert dropped(report) == {} and len(features["train"]) + len(features["eval"]) == 32
    texts = set(features["train"]["text"]) | set(features["eval"]["text"])
    assert {"ez  sêvan dixwim", "seor roj baş"} <= texts


def test_too_many_lost_digits_stop_the_run_before_any_audio_is_decoded(tmp_path, tokenizer, model_config, monkeypatch):
    folder = demo_with_texts(
        tmp_path / "lj", {index: f"Ez {index} sêvan dixwim." for index in range(2, 8)} | {8: "Ez 12 sêv û 1 hirmî."}
    )

    def must_not_decode(*_, **__):
        raise AssertionError("audio was decoded")

    monkeypatch.setattr(recipe.data.features, "decode_audio", must_not_decode)
    with pytest.raises(DataError) as error:
        prepare_datasets(args(folder, tmp_path), tokenizer, model_config, str(tmp_path / "out"))
    message = str(error.value)
    # 7 of the 32 clips lose digits; the eval hold-out takes 4 of the 32
    assert message.startswith("train: ") and "--max_text_not_in_vocabulary_fraction 0.05" in message
    assert "'2' x" in message and "'1' x" in message
    assert "write the numbers out in words" in message and "--extend_vocabulary does not add digits" in message
    assert "add them to the vocabulary" not in message  # no letter is missing
    assert "--keep_clips_with_dropped_characters" in message
    assert not (tmp_path / "out" / "data_report.json").exists()
    assert not list((tmp_path / "cache" / "vits_features").iterdir())


def test_the_bound_is_checked_on_a_cached_report_too(tmp_path, tokenizer, model_config, monkeypatch):
    folder = demo_with_texts(tmp_path / "lj", {0: "Ez 2 sêvan dixwim.", 1: "Señor, roj baş!"})
    prepare_datasets(
        args(folder, tmp_path, max_text_not_in_vocabulary_fraction=0.5), tokenizer, model_config, str(tmp_path)
    )

    def must_not_run(*_, **__):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(recipe.data.features, "featurize", must_not_run)
    with pytest.raises(DataError, match=r"clips .* have letters or digits.*'ñ' x1: add them.*'2' x1: write"):
        prepare_datasets(
            args(folder, tmp_path, max_text_not_in_vocabulary_fraction=0.01), tokenizer, model_config, str(tmp_path)
        )


def test_extend_vocabulary_adds_letters_and_says_what_it_skipped(tmp_path, tokenizer, caplog):
    folder = demo_with_texts(tmp_path / "lj", {0: "Ez 2 sêvan dixwim.", 1: "Señor, roj baş!", 2: "Ez ½ nan xwar."})
    with caplog.at_level(logging.INFO, logger="recipe.model.vocabulary"):
        extended, report = extend_vocabulary(args(folder, tmp_path), tokenizer)
    assert [entry["character"] for entry in report["added"]] == ["ñ"]
    assert "ñ" in extended.get_vocab() and "2" not in extended.get_vocab() and "," not in extended.get_vocab()
    skipped = {entry["character"]: entry for entry in report["skipped"]}
    assert {"2", "½", ",", ".", "!"} <= set(skipped)
    assert skipped["2"]["count"] == 1 and "write numbers out in words" in skipped["2"]["reason"]
    assert "strips it by design" in skipped[","]["reason"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("'2' x1" in message and "'½' x1" in message for message in warnings)
