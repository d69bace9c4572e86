"""`recipe.folders`: a folder appears whole or not at all."""

import os

import pytest

from recipe.folders import folder_written_whole, publish_folder


def test_a_failed_write_leaves_nothing_beside_the_destination(tmp_path):
    destination = tmp_path / "voice"
    with pytest.raises(RuntimeError, match="half way"):
        with folder_written_whole(str(destination)) as folder:
            (tmp_path / "voice-half").write_text("")  # a file of the user's beside it stays
            open(os.path.join(folder, "config.json"), "w").close()
            raise RuntimeError("half way")
    assert sorted(os.listdir(tmp_path)) == ["voice-half"]


def test_a_complete_write_replaces_an_empty_folder_and_refuses_a_full_one(tmp_path):
    destination = tmp_path / "voice"
    destination.mkdir()
    with folder_written_whole(str(destination)) as folder:
        open(os.path.join(folder, "config.json"), "w").close()
    assert os.listdir(destination) == ["config.json"]
    with pytest.raises(FileExistsError, match="not empty"):
        with folder_written_whole(str(destination)) as folder:
            open(os.path.join(folder, "other.json"), "w").close()
    assert os.listdir(destination) == ["config.json"]
    assert sorted(os.listdir(tmp_path)) == ["voice"]


def test_overwrite_replaces_a_full_folder(tmp_path):
    old, new = tmp_path / "checkpoint-5", tmp_path / "partial-checkpoint-5"
    old.mkdir(), new.mkdir()
    (old / "stale").write_text(""), (new / "fresh").write_text("")
    publish_folder(str(new), str(old), overwrite=True, durable=True)
    assert os.listdir(old) == ["fresh"] and sorted(os.listdir(tmp_path)) == ["checkpoint-5"]
