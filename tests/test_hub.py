"""The model card's metadata and figures, and exactly what `push_to_hub` would upload (network calls stubbed)."""

from __future__ import annotations

import json
import os
import string

import pytest
from conftest import make_tiny_config
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.utils import filter_repo_objects
from transformers import VitsModel, VitsTokenizer

from recipe.model.discriminator import DiscriminatorConfig, load_discriminator, save_discriminator
from recipe.piper.decoder import Resblock2VitsConfig, VitsModelResblock2
from recipe.training.hub import MODEL_ID_PLACEHOLDER, build_model_card, files_to_upload, push_to_hub

LOSSES = {"mel": 21.5, "kl": 1.25, "duration": 0.75}
# a type-2 Piper decoder (as tests/test_piper.py builds one)
TYPE2 = dict(resblock_kernel_sizes=[3, 5, 7], resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]])


def test_model_card_metadata_and_figures():
    card_text = build_model_card(
        base_model="facebook/mms-tts-kmr-script_latin",
        dataset_name="mozilla-foundation/common_voice_17_0",
        hours_of_audio=3.456,
        steps=1200,
        final_losses=LOSSES,
        amplitude_status="OK",
        language="kmr",
        lineage=[{"model": "facebook/mms-tts-kmr-script_latin", "dataset": "bible", "steps": 0}],
    )
    card = ModelCard(card_text)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-to-speech"
    assert card.data.base_model == "facebook/mms-tts-kmr-script_latin"
    assert card.data.language == "kmr"
    assert card.data.datasets == ["mozilla-foundation/common_voice_17_0"]
    assert "text-to-speech" in card.data.tags
    assert "(3.46 hours of audio)" in card.text
    assert "for 1200 steps" in card.text
    assert "| mel | 21.5000 |" in card.text and "| kl | 1.2500 |" in card.text
    assert "Last amplitude-monitor status: **OK**." in card.text
    assert "| facebook/mms-tts-kmr-script_latin | bible | 0 |" in card.text
    assert "## Speakers" not in card.text


def test_model_card_of_a_multi_speaker_model_lists_its_speakers():
    speakers = {"speakers": [{"id": 0, "name": "c0ffee", "train_minutes": 4.25}, {"id": 1, "name": "beef"}]}
    card = build_model_card("facebook/mms-tts-kmr-script_latin", "cv", 0.1, 10, LOSSES, "OK", speakers=speakers)
    assert 'forward_params={"speaker_id": k}' in card
    assert "| 0 | c0ffee | 4.2 |" in card and "| 1 | beef | 0.0 |" in card


def test_model_card_with_local_paths_and_status_file(tmp_path):
    status = {
        "status": "WARNING",
        "last_evaluation": {"step": 30, "rms": 0.05, "peak": 0.6, "reference_rms": 0.08},
    }
    card = ModelCard(build_model_card(str(tmp_path), str(tmp_path / "cv_kmr"), 0.5, 30, LOSSES, status))
    # local folders are no Hub references: kept out of the metadata, shown by name in the text
    assert card.data.base_model is None and card.data.datasets is None
    assert "on **cv_kmr**" in card.text
    assert (
        "**WARNING** (synthesized RMS 0.0500 vs 0.0800 for the eval recordings, peak 0.600, at step 30)" in card.text
    )


def _save_tiny_voice(folder, type2: bool) -> None:
    """A tiny random voice and its character tokenizer in `folder`; with `type2`, a type-2 Piper decoder."""
    characters = ["<pad>", "<unk>", " "] + list(string.ascii_lowercase)
    folder.mkdir()
    vocab_file = folder / "vocab_source.json"
    vocab_file.write_text(json.dumps({c: i for i, c in enumerate(characters)}), encoding="utf-8")
    if type2:
        config = Resblock2VitsConfig(**make_tiny_config(vocab_size=len(characters), **TYPE2).to_dict())
        VitsModelResblock2(config).save_pretrained(folder)
    else:
        VitsModel(make_tiny_config(vocab_size=len(characters))).save_pretrained(folder)
    VitsTokenizer(str(vocab_file), phonemize=False).save_pretrained(folder)


@pytest.mark.parametrize("type2", [False, True], ids=["transformers-decoder", "type-2-piper-decoder"])
def test_model_card_snippet_loads_the_saved_model(tmp_path, type2):
    """The card's "Use" snippet, run up to its loading line on a saved folder, loads it: `pipeline` for a model
    transformers has, `recipe.voices.load_voice` for a type-2 Piper decoder (which transformers refuses)."""
    folder = tmp_path / "voice"
    _save_tiny_voice(folder, type2)
    model_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    card = ModelCard(build_model_card("someone/base", "local", 1.0, 10, LOSSES, "OK", model_config=model_config))
    assert card.data.pipeline_tag == "text-to-speech"
    snippet = card.text.split("## Use")[1].split("```python\n")[1].split("```")[0]
    assert ("pipeline(" in snippet) is not type2 and ("load_voice(" in snippet) is type2
    lines = snippet.splitlines()
    loading_line = next(index for index, line in enumerate(lines) if MODEL_ID_PLACEHOLDER in line)
    namespace = {}
    exec("\n".join(lines[: loading_line + 1]).replace(MODEL_ID_PLACEHOLDER, str(folder)), namespace)
    if type2:
        assert isinstance(namespace["model"], VitsModelResblock2) and namespace[
            "model"
        ].config.resblock_kernel_sizes == [3, 5, 7]
        assert namespace["tokenizer"].get_vocab()["a"] == 3
    else:
        assert type(namespace["tts"].model) is VitsModel


@pytest.fixture
def output_dir(tmp_path):
    """A final output_dir as the trainer leaves it: model, tokenizer, discriminator, checkpoints and run files."""
    characters = ["<pad>", "<unk>", " "] + list(string.ascii_lowercase)
    vocab_file = tmp_path / "vocab_source.json"
    vocab_file.write_text(json.dumps({c: i for i, c in enumerate(characters)}), encoding="utf-8")
    folder = tmp_path / "out"
    VitsModel(make_tiny_config(vocab_size=len(characters))).save_pretrained(folder)
    VitsTokenizer(str(vocab_file), phonemize=False).save_pretrained(folder)
    small = DiscriminatorConfig(periods=[2, 3], period_channels=[1, 4, 8], scale_channels=[1, 4, 16])
    save_discriminator(load_discriminator("random", small), str(folder))
    for name in ("trainer_state.json", "training_args.bin", "data_report.json", "all_results.json"):
        (folder / name).write_text("{}")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    (folder / "checkpoint-10" / "config.json").write_text("{}")
    (folder / "runs" / "Jan01").mkdir(parents=True)
    (folder / "runs" / "Jan01" / "events.out.tfevents.1").write_bytes(b"x")
    return folder


@pytest.fixture
def hub_calls(monkeypatch):
    """Stub the two network calls; record their arguments."""
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        calls["upload_folder"] = kwargs
        return None

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def uploaded_files(upload_kwargs) -> set[str]:
    """The files `HfApi.upload_folder` would send, filtered by huggingface_hub's own pattern matching."""
    folder = upload_kwargs["folder_path"]
    local = [
        os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
        for root, _, names in os.walk(folder)
        for name in names
    ]
    return set(
        filter_repo_objects(
            local,
            allow_patterns=upload_kwargs.get("allow_patterns"),
            ignore_patterns=upload_kwargs.get("ignore_patterns"),
        )
    )


def test_push_uploads_model_tokenizer_and_card_only(output_dir, hub_calls):
    card = build_model_card("facebook/mms-tts-kmr-script_latin", "local", 1.0, 10, LOSSES, "OK")
    repo_id = push_to_hub(str(output_dir), "someone/mms-kmr-ft", card, private=True)

    assert repo_id == "someone/mms-kmr-ft"
    assert hub_calls["create_repo"] == {"repo_id": "someone/mms-kmr-ft", "private": True, "exist_ok": True}
    upload = hub_calls["upload_folder"]
    assert upload["repo_id"] == "someone/mms-kmr-ft" and upload["folder_path"] == str(output_dir)
    # what VitsModel / VitsTokenizer.save_pretrained wrote, and the card; no discriminator, checkpoint or run file
    expected = {"config.json", "model.safetensors", "vocab.json", "tokenizer_config.json", "README.md"}
    assert uploaded_files(upload) == expected
    assert (output_dir / "README.md").read_text(encoding="utf-8") == card


def test_push_with_discriminator(output_dir, hub_calls):
    push_to_hub(str(output_dir), "someone/mms-kmr-ft", "card", include_discriminator=True)
    assert uploaded_files(hub_calls["upload_folder"]) == {
        "config.json",
        "model.safetensors",
        "vocab.json",
        "tokenizer_config.json",
        "README.md",
        "discriminator.safetensors",
        "discriminator_config.json",
    }


def test_push_refuses_incomplete_folders(output_dir, tmp_path, hub_calls):
    (output_dir / "discriminator.safetensors").unlink()
    (output_dir / "discriminator_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no discriminator"):
        push_to_hub(str(output_dir), "someone/x", "card", include_discriminator=True)
    (output_dir / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no saved model"):
        push_to_hub(str(output_dir), "someone/x", "card")
    with pytest.raises(FileNotFoundError, match="No model folder"):
        files_to_upload(str(tmp_path / "missing"))
    assert "upload_folder" not in hub_calls
