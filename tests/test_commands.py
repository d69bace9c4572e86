"""One way to fail for the four commands: bad input is one line `PROG: error: MESSAGE` and exit status 2, an
unavailable resource 3, a failed peer process 4, without a traceback (unless `RECIPE_DEBUG=1`); a bug keeps its
traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from conftest import DEMO_DIR, REPO_ROOT

from recipe.errors import (
    DEBUG_VARIABLE,
    EXIT_STATUSES,
    ArgumentsError,
    InputError,
    PeerFailureError,
    UnavailableError,
    help_epilog,
    run_command,
)


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
    assert error.startswith(f"run_finetune.py: error: --model_name_or_path {missing!r}: no such folder")
    assert error.count("\n") == 1
    assert (
        run_finetune.cli(["--model_name_or_path", missing, "--tokenizer_name", str(DEMO_DIR / "tiny_model"), *flags])
        == 2
    )
    assert f"--model_name_or_path {missing!r}: no such folder" in capsys.readouterr().err
    # a folder that is not a model
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    assert run_finetune.cli(["--model_name_or_path", str(not_a_model), *flags]) == 2
    assert f"--model_name_or_path {str(not_a_model)!r}: a folder without a tokenizer" in capsys.readouterr().err


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


@pytest.mark.parametrize(
    ("error", "status", "named"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/cache/features"), 3, "/data/cache/features"),
        (OSError(errno.EACCES, "Permission denied", "/srv/out"), 3, "/srv/out"),
        (UnavailableError("the Hub cannot be reached (huggingface.co)"), 3, "the Hub cannot be reached"),
        (PeerFailureError("Process 1 of 2: the connection to another process broke"), 4, "Process 1 of 2"),
    ],
)
def test_the_environment_and_peer_failures_have_their_own_status(error, status, named, monkeypatch, capsys):
    def fails(argv):
        raise error

    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    assert run_command("prog", fails, []) == status
    stderr = capsys.readouterr().err
    assert stderr.startswith("prog: error: ") and named in stderr and stderr.count("\n") == 1
    assert status in EXIT_STATUSES and str(status) in help_epilog("prog")


def test_an_oserror_that_is_not_the_environment_stays_a_bug(capsys):
    def fails(argv):
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError, match="Bad file descriptor"):
        run_command("prog", fails, [])
    assert capsys.readouterr().err == ""


def test_an_output_folder_that_may_not_be_written_is_one_line_with_status_3(tmp_path):
    # /sys refuses new entries to every user, root included, so the test holds wherever it runs
    completed = _run(
        "run_finetune.py", "configs/demo.json", "--output_dir", "/sys/recipe-test-output",
        "--cache_dir", str(tmp_path / "cache"), "--max_steps", "1",
    )  # fmt: skip
    assert completed.returncode == 3, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert "run_finetune.py: error: /sys/recipe-test-output" in completed.stderr
