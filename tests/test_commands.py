"""One way to fail for the four commands: bad input is one line `PROG: error: MESSAGE` and exit status 2, without a
traceback (unless `RECIPE_DEBUG=1`); a bug keeps its traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import DEMO_DIR, REPO_ROOT

from recipe.errors import DEBUG_VARIABLE, ArgumentsError, InputError, run_command


def _run(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop(DEBUG_VARIABLE, None)
    return subprocess.run(
        [sys.executable, *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env
    )


def _assert_one_line_input_error(completed: subprocess.CompletedProcess, prog: str, named: str) -> None:
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(lines) == 1 and named in lines[0], completed.stderr[-3000:]


def test_run_finetune_names_a_missing_dataset_folder(tmp_path):
    missing = str(tmp_path / "no-such-dataset")
    completed = _run(
        "run_finetune.py", "configs/demo.json", "--dataset_name", missing,
        "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
    )  # fmt: skip
    _assert_one_line_input_error(completed, "run_finetune.py", missing)


def test_run_finetune_names_a_model_it_cannot_load(tmp_path, capsys):
    import run_finetune

    missing = str(tmp_path / "no-such-model")
    flags = ["--dataset_name", str(DEMO_DIR / "kmr_ljspeech"), "--output_dir", str(tmp_path / "out")]
    assert run_finetune.cli(["--model_name_or_path", missing, *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"run_finetune.py: error: --model_name_or_path {missing!r}: could not load a tokenizer")
    assert error.count("\n") == 1
    assert (
        run_finetune.cli(["--model_name_or_path", missing, "--tokenizer_name", str(DEMO_DIR / "tiny_model"), *flags])
        == 2
    )
    assert f"--model_name_or_path {missing!r}: could not load a VitsModel config" in capsys.readouterr().err


def test_compare_names_a_missing_model(tmp_path):
    missing = str(tmp_path / "no-such-model")
    texts = tmp_path / "texts.txt"
    texts.write_text("roj baş\n", encoding="utf-8")
    completed = _run(
        "-m", "recipe.compare", "--finetuned", missing, "--texts", str(texts), "--output_dir", str(tmp_path / "out")
    )
    _assert_one_line_input_error(completed, "python -m recipe.compare", missing)


def test_piper_import_names_a_file_that_is_not_onnx(tmp_path):
    pytest.importorskip("piper", reason="needs the piper extra")
    voice = tmp_path / "voice.onnx"
    voice.write_bytes(b"not an onnx file at all")
    # a config the import accepts, so that the refusal is the ONNX file's
    config = {
        "audio": {"sample_rate": 22050},
        "phoneme_type": "text",
        "phoneme_id_map": {"_": [0], "^": [1], "$": [2]},
    }
    (tmp_path / "voice.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    completed = _run("-m", "recipe.piper", "import", str(voice), "--output_dir", str(tmp_path / "out"), "--no_check")
    _assert_one_line_input_error(completed, "python -m recipe.piper", f"{voice}: not an ONNX model")
    assert not (tmp_path / "out").exists()


def test_export_names_a_missing_model_folder(tmp_path):
    missing = str(tmp_path / "no-such-model")
    completed = _run("-m", "recipe.export", missing, "--format", "onnx", "--output_dir", str(tmp_path / "out"))
    _assert_one_line_input_error(completed, "python -m recipe.export", missing)


def test_an_input_error_is_one_line_with_status_2_and_its_traceback_on_request(monkeypatch, capsys):
    def refuses(argv):
        raise ArgumentsError(f"--texts {argv[0]}: no such file\n(line two)")

    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    assert run_command("prog", refuses, ["a.txt"]) == 2
    assert capsys.readouterr().err == "prog: error: --texts a.txt: no such file (line two)\n"

    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    assert run_command("prog", refuses, ["a.txt"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("Traceback") and "in refuses" in error
    assert error.endswith("prog: error: --texts a.txt: no such file (line two)\n")


def test_the_command_status_is_returned(capsys):
    assert run_command("prog", lambda argv: None, []) == 0
    assert run_command("prog", lambda argv: 1, []) == 1
    assert capsys.readouterr().err == ""


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """A non-input error propagates out of `run_finetune.cli` (the interpreter prints its traceback), unreported."""
    import run_finetune

    def buggy(argv):
        return {}["missing key"]

    monkeypatch.setattr(run_finetune, "main", buggy)
    with pytest.raises(KeyError, match="missing key"):
        run_finetune.cli(["configs/demo.json"])
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "error_class",
    [
        "recipe.data.source.DataError",
        "recipe.training.checkpoints.CheckpointLoadError",
        "recipe.training.checkpoints.CheckpointSaveError",
        "recipe.export.errors.ExportError",
        "recipe.evaluation.asr.AsrUnavailableError",
        "recipe.piper.cli.VoiceImportError",
        "recipe.errors.MissingExtraError",
        "recipe.errors.MissingInputError",
    ],
)
def test_the_user_facing_errors_are_input_errors(error_class):
    import importlib

    module, name = error_class.rsplit(".", 1)
    assert issubclass(getattr(importlib.import_module(module), name), InputError)
