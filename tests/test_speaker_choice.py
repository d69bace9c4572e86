"""`--speakers`: several speakers of the data into one multi-speaker model, chosen by rule, each held out for
evaluation, with the speaker map in the output folder."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import torch
from conftest import DEMO_DIR, make_tiny_config
from transformers import VitsModel, pipeline

from recipe.data.pipeline import prepare_datasets
from recipe.data.source import DataError
from recipe.data.speaker_choice import SpeakerRule, choose_speakers, parse_speakers
from recipe.errors import ArgumentsError, run_command
from recipe.evaluation.compare import PROG
from recipe.evaluation.compare import main as compare_main
from recipe.training.arguments import DataArguments
from recipe.voices import load_tokenizer
from recipe.voices.speaker_map import SPEAKER_MAP_NAME
from run_finetune import main

COMMON_VOICE = DEMO_DIR / "kmr_common_voice"
# the demo's four Common Voice speakers, by their training clips (train.tsv, less the dev clips)
SECONDS = Counter({"a": 300.0, "b": 200.0, "c": 100.0, "dd": 20.0})
CLIPS = Counter({"a": 12, "b": 6, "c": 4, "dd": 3})


def test_the_forms_of_speakers_parse_and_others_are_refused():
    assert parse_speakers("all") == SpeakerRule("all")
    assert parse_speakers("top:4") == SpeakerRule("top", 4)
    assert parse_speakers("min_minutes:1.5") == SpeakerRule("min_minutes", 1.5)
    assert parse_speakers(" a, b ,a") == SpeakerRule("ids", ids=("a", "b"))
    for bad in ("top:1", "top:x", "min_minutes:0", " , "):
        with pytest.raises(ValueError, match="all, top:N"):
            parse_speakers(bad)


def test_speakers_are_chosen_by_rule_and_the_others_are_said_why():
    chosen, left_out = choose_speakers(parse_speakers("top:2"), SECONDS, CLIPS)
    assert chosen == ("a", "b") and left_out == [
        "c: rank 3 by audio, beyond top:2",
        "dd: rank 4 by audio, beyond top:2",
    ]
    chosen, left_out = choose_speakers(parse_speakers("min_minutes:2"), SECONDS, CLIPS)
    assert chosen == ("a", "b") and any(line.startswith("c: 1.67 minutes") for line in left_out)
    assert choose_speakers(parse_speakers("all"), Counter(), CLIPS)[0] == ("a", "b", "c", "dd")
    assert choose_speakers(parse_speakers("dd,a"), Counter(), CLIPS)[0] == ("a", "dd")


def test_unknown_ids_name_the_closest_real_ones_and_the_biggest():
    with pytest.raises(DataError, match=r"'d': closest 'dd'.*most clips: 'a' \(12 clips\)"):
        choose_speakers(parse_speakers("a,d"), Counter(), CLIPS)
    with pytest.raises(DataError, match="needs at least two"):
        choose_speakers(parse_speakers("min_minutes:4"), SECONDS, CLIPS)


def _prepare(tmp_path, dataset, speakers, tokenizer):
    data_args = DataArguments(dataset_name=str(dataset), cache_dir=str(tmp_path / "cache"), speakers=speakers)
    config = make_tiny_config(vocab_size=len(tokenizer))
    return prepare_datasets(data_args, tokenizer, config, str(tmp_path / "out"))


def test_top_speakers_of_common_voice_train_and_evaluate(tmp_path):
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    splits, report = _prepare(tmp_path, COMMON_VOICE, "top:2", tokenizer)
    names = splits["train"].features["speaker_id"].names
    assert len(names) == 2 and set(splits["train"]["speaker_id"]) == {0, 1}
    assert set(splits["eval"]["speaker_id"]) <= {0, 1}  # the dev split, less the other speakers
    assert report["train"]["speaker_id"] == list(names)
    # the per-speaker table of the report: what each trained speaker keeps
    table = report["train"]["speakers"]
    assert [entry["name"] for entry in table] == list(names)
    assert sum(entry["clips"] for entry in table) == len(splits["train"]) and all(e["minutes"] > 0 for e in table)


def test_without_an_eval_split_every_speaker_is_held_out_for_evaluation(tmp_path):
    folder = tmp_path / "cv"
    shutil.copytree(COMMON_VOICE, folder)
    for name in ("dev.tsv", "test.tsv", "validated.tsv"):
        (folder / name).unlink()
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    splits, _ = _prepare(tmp_path, folder, "all", tokenizer)
    assert len(splits["train"].features["speaker_id"].names) == 4
    assert set(splits["eval"]["speaker_id"]) == {0, 1, 2, 3}, "each speaker has eval clips"


def test_speakers_need_a_speaker_column_and_exclude_speaker_id(tmp_path):
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    with pytest.raises(DataError, match="--speakers 'all': .* has no speaker column"):
        _prepare(tmp_path, DEMO_DIR / "kmr_ljspeech", "all", tokenizer)
    with pytest.raises(ValueError, match="give one of them"):
        DataArguments(dataset_name=str(COMMON_VOICE), speakers="all", speaker_id="top")


def _run(tmp_path, output, *model_and_extra):
    """Two steps of the demo's settings on the Common Voice demo; `model_and_extra` gives the model and more flags."""
    flags = {
        "--dataset_name": str(COMMON_VOICE), "--output_dir": str(output), "--cache_dir": str(tmp_path / "cache"),
        "--max_steps": "2", "--eval_strategy": "steps", "--eval_steps": "2", "--save_strategy": "steps",
        "--save_steps": "2", "--per_device_train_batch_size": "4", "--per_device_eval_batch_size": "4",
        "--discriminator": "none", "--logging_steps": "1", "--report_to": "none", "--disable_tqdm": "true",
        "--segment_size": "8",
    }  # fmt: skip
    return main([*model_and_extra, *(word for pair in flags.items() for word in pair)])


TINY = [
    "--config_name",
    str(DEMO_DIR / "tiny_model" / "config.json"),
    "--tokenizer_name",
    str(DEMO_DIR / "tiny_model"),
]


def test_a_single_speaker_model_trains_as_a_multi_speaker_one_with_its_speaker_map(tmp_path, capsys):
    output = tmp_path / "out"
    _run(tmp_path, output, *TINY, "--speakers", "all")
    reloaded = VitsModel.from_pretrained(output)
    assert reloaded.config.num_speakers == 4
    mapping = json.loads((output / SPEAKER_MAP_NAME).read_text())
    assert json.loads((output / "checkpoint-2" / SPEAKER_MAP_NAME).read_text()) == mapping
    assert [entry["id"] for entry in mapping["speakers"]] == [0, 1, 2, 3]
    assert all(entry["train_minutes"] > 0 for entry in mapping["speakers"])
    tts = pipeline("text-to-speech", model=str(output))
    for speaker in (0, 3):
        assert len(tts("roj baş", forward_params={"speaker_id": speaker})["audio"].reshape(-1)) > 0
    with pytest.raises(ValueError, match="range 0-3"):
        tts("roj baş", forward_params={"speaker_id": 4})

    # recipe.compare reads as every speaker unless told, and names the speakers of a --speaker_id out of range
    texts = tmp_path / "texts.txt"
    texts.write_text("roj baş\n", encoding="utf-8")
    argv = [
        "--finetuned",
        str(output),
        "--texts",
        str(texts),
        "--output_dir",
        str(tmp_path / "cmp"),
        "--device",
        "cpu",
    ]
    assert run_command(PROG, compare_main, [*argv, "--speaker_id", "9"]) == 2
    assert f"--speaker_id 9: --finetuned {output} has speakers 0..3 (0 ({mapping['speakers'][0]['name'][:12]}" in (
        capsys.readouterr().err
    )
    run_command(PROG, compare_main, argv)
    compared = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    names = [entry["name"] for entry in mapping["speakers"]]
    assert [sentence["speaker"] for sentence in compared["sentences"]] == names  # the one text, read as each
    assert list(compared["summary"]["speakers"]) == names
    run_command(PROG, compare_main, [*argv, "--speaker_id", "2", "--output_dir", str(tmp_path / "cmp2")])
    compared = json.loads((tmp_path / "cmp2" / "comparison.json").read_text())
    assert [sentence["speaker"] for sentence in compared["sentences"]] == [names[2]]

    # a second round on the same speakers goes on from the saved map
    _run(tmp_path, tmp_path / "again", "--model_name_or_path", str(output), "--speakers", "all")
    assert (
        json.loads((tmp_path / "again" / SPEAKER_MAP_NAME).read_text())["speakers"][0]["name"]
        == (mapping["speakers"][0]["name"])
    )


# the demo's Common Voice speakers (train.tsv's client_id), by their clips: 12, 6, 4 and 3
A, B, C, D = (
    "7e4af088237e9c84aac051e5dee87d5719d1437798cb81c24f5e9beab1da90c5166707eceef5b35eb414c2ba6379955f9da53297ef859bfbbfb902f7d3830678",
    "7f6ae99b35ec3d6736ec819a7789f709d929bf791cde45db32e7b23319b83535ec9f4e1d67d16e1eac0548ea9b4a81ab4907bd08316024de3767f54f9fa2c17c",
    "3870d67e411f75362dc401c3ccc694f7075af78b1a1418e66450b870d7f50f546017142168fabacfb53fbf6ed773ec33155efca33a477d90deb581e007812eff",
    "4dda91e5dbe51199a12b603e0b20ac2951422f6aabed0e6348db5e32dba04b53cb55b473870f72f4835dba80d2a566265695e59760f4f372ef5ea8998663ebc4",
)  # fmt: skip


def _multi_speaker_folder(folder, names: list[str], minutes: float = 1.5) -> VitsModel:
    model = VitsModel(make_tiny_config(vocab_size=36, num_speakers=len(names), speaker_embedding_size=8))
    model.save_pretrained(folder)
    load_tokenizer(str(DEMO_DIR / "tiny_model")).save_pretrained(folder)
    speakers = [{"id": index, "name": name, "train_minutes": minutes} for index, name in enumerate(names)]
    (folder / SPEAKER_MAP_NAME).write_text(json.dumps({"speakers": speakers, "dataset": None}))
    return model


def test_speakers_added_to_a_multi_speaker_model_keep_the_ones_it_has(tmp_path, caplog):
    """The data's speakers the model has take its ids, new ones get rows after its own; a speaker of the model
    without clips keeps its row untouched; the map adds this round's minutes to the earlier ones."""
    folder = tmp_path / "model"
    model = _multi_speaker_folder(folder, ["x", B])
    caplog.set_level("INFO")
    _run(tmp_path, tmp_path / "out", "--model_name_or_path", str(folder), "--speakers", "top:2")
    result = VitsModel.from_pretrained(tmp_path / "out")
    mapping = json.loads((tmp_path / "out" / SPEAKER_MAP_NAME).read_text())
    # top:2 chose a and b; b is the model's speaker 1, a is new: speaker 2
    assert [entry["name"] for entry in mapping["speakers"]] == ["x", B, A]
    assert result.config.num_speakers == 3
    minutes = {entry["name"]: entry["train_minutes"] for entry in mapping["speakers"]}
    assert minutes["x"] == 1.5 and minutes[B] > 1.5 and 0 < minutes[A] < 1.5
    # x had no clip: its row never had a gradient (no weight decay on it either)
    assert torch.equal(result.embed_speaker.weight[0], model.embed_speaker.weight[0])
    assert not torch.equal(result.embed_speaker.weight[1], model.embed_speaker.weight[1])
    assert (
        "the model's 2 speakers keep their ids; 1 new speakers get ids 2-2; 1 of the model's speakers" in caplog.text
    )


def test_the_model_speakers_are_replayed_under_their_own_ids(tmp_path, caplog):
    """--replay_dataset_name on a multi-speaker model keeps the replay clips of the model's speakers only, labelled
    with the model's ids, whichever speakers this round's --speakers chose from the new data."""
    folder = tmp_path / "model"
    _multi_speaker_folder(folder, [A, B])
    caplog.set_level("INFO")
    _run(
        tmp_path, tmp_path / "out", "--model_name_or_path", str(folder), "--speakers", f"{C},{D}",
        "--replay_dataset_name", str(COMMON_VOICE), "--replay_fraction", "0.5",
    )  # fmt: skip
    mapping = json.loads((tmp_path / "out" / SPEAKER_MAP_NAME).read_text())
    assert [entry["name"] for entry in mapping["speakers"]] == [A, B, C, D]
    replay = json.loads(caplog.text.split("Replay: ")[1].split("\n")[0].replace("'", '"').replace("False", "false"))
    assert set(replay["replay_clips_per_speaker"]) == {A, B}
    assert sum(replay["replay_clips_per_speaker"].values()) == replay["replay_clips"] == replay["new_clips"]


def test_a_multi_speaker_model_without_a_map_of_its_speakers_is_refused(tmp_path):
    folder = tmp_path / "model"
    model = _multi_speaker_folder(folder, ["x", "y"])
    (folder / SPEAKER_MAP_NAME).unlink()
    with pytest.raises(ArgumentsError, match=r"has 2 speakers but no speakers.json"):
        _run(tmp_path, tmp_path / "out", "--model_name_or_path", str(folder), "--speakers", "top:2")
    (folder / SPEAKER_MAP_NAME).write_text(json.dumps({"speakers": [{"id": 0, "name": "x"}], "dataset": None}))
    with pytest.raises(ArgumentsError, match=r"names 1 speakers \[x\], but the model has 2"):
        _run(tmp_path, tmp_path / "out", "--model_name_or_path", str(folder), "--speakers", "top:2")
    assert torch.equal(VitsModel.from_pretrained(folder).embed_speaker.weight, model.embed_speaker.weight)
