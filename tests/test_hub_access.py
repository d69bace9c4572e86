"""A Hub id the run cannot have fails in seconds with one line: the Hub unreachable (an endpoint that refuses
connections stands for it), `HF_HUB_OFFLINE` without the model in the cache, a path that does not exist; and a
pickle `torch.load(weights_only=True)` refuses is named with what to do."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import DEMO_DIR, REPO_ROOT
from huggingface_hub import constants

import recipe.hub_access
from recipe.errors import DEBUG_VARIABLE, MissingInputError, UnavailableError
from recipe.hub_access import check_hub_name, looks_like_path, refused_pickle_message, unreachable_reason

# nothing listens on the discard port of the loopback: the connection is refused at once, as with no network
UNREACHABLE = "http://127.0.0.1:9"


class Evil:
    """Pickled as a call of `os.getcwd`: what a crafted file does to run code when unpickled."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.fixture
def hub_unreachable(monkeypatch):
    """The Hub online (no HF_HUB_OFFLINE) at an endpoint that refuses connections, checked afresh."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(recipe.hub_access, "_reachability", {})


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE (as the tests run) with an empty Hugging Face cache."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


def test_an_unreachable_hub_is_found_in_seconds_once_per_process(hub_unreachable, monkeypatch):
    probes = []
    real_probe = recipe.hub_access._probe
    monkeypatch.setattr(recipe.hub_access, "_probe", lambda *args: probes.append(args) or real_probe(*args))
    started = time.monotonic()
    with pytest.raises(UnavailableError) as error:
        check_hub_name("someone/voice", "--model_name_or_path")
    assert time.monotonic() - started < recipe.hub_access.CHECK_TIMEOUT_SECONDS + 2
    message = str(error.value)
    assert message.startswith("--model_name_or_path 'someone/voice': not a local path, and the Hugging Face Hub")
    assert UNREACHABLE in message and "refused" in message.lower()
    assert "a local model folder" in message and "HF_HUB_OFFLINE=1" in message and constants.HF_HUB_CACHE in message
    with pytest.raises(UnavailableError):
        check_hub_name("someone/other", "--tokenizer_name")
    assert len(probes) == 1  # the answer is kept for the process


def test_an_endpoint_that_answers_even_with_an_error_status_is_reachable():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # 501 to every HEAD
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        assert unreachable_reason(f"http://127.0.0.1:{server.server_port}") is None
    finally:
        thread.join(5)
        server.server_close()


def test_every_hub_loader_checks_before_its_first_hub_access(hub_unreachable, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    from recipe.data.sources import load_source
    from recipe.model.discriminator import load_discriminator
    from recipe.voices import load_tokenizer, load_voice, load_voice_config

    monkeypatch.chdir(tmp_path)  # no local folder named like the ids
    for load in (load_tokenizer, load_voice_config, load_voice):
        with pytest.raises(UnavailableError, match="^--model_name_or_path 'someone/voice': not a local path"):
            load("someone/voice")
    with pytest.raises(UnavailableError, match="^--tokenizer_name 'someone/voice'"):
        load_tokenizer("someone/voice", flag="--tokenizer_name")

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked although it is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    with pytest.raises(UnavailableError, match="^--discriminator 'someone/voice-train'") as error:
        load_discriminator("someone/voice-train")
    assert isinstance(error.value, FileNotFoundError)  # what load_discriminator's callers catch
    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    with pytest.raises(UnavailableError, match="^--dataset_name 'someone/kmr-tts'.*a local dataset"):
        load_source("someone/kmr-tts")


def test_an_unreachable_asr_model_is_named(hub_unreachable):
    pytest.importorskip("jiwer")
    from recipe.evaluation.asr import load_asr

    with pytest.raises(UnavailableError, match="^--asr_model 'openai/whisper-tiny': not a local path"):
        load_asr("openai/whisper-tiny")


def test_offline_a_model_missing_from_the_cache_is_one_line(empty_cache, tmp_path, monkeypatch):
    from recipe.voices import load_tokenizer, load_voice_config

    monkeypatch.chdir(tmp_path)
    for load in (load_tokenizer, load_voice_config):
        with pytest.raises(UnavailableError) as error:
            load("someone/voice")
        message = str(error.value)
        assert message.startswith("--model_name_or_path 'someone/voice': HF_HUB_OFFLINE=1 is set")
        assert f"not in the Hugging Face disk cache ({empty_cache})" in message and "a local model folder" in message
    # a snapshot in the cache is left to the loader
    (empty_cache / "models--someone--voice" / "snapshots" / "0123").mkdir(parents=True)
    recipe.hub_access.require_cached_when_offline("someone/voice", "--model_name_or_path")


def test_offline_a_dataset_missing_from_the_cache_is_one_line(tmp_path, monkeypatch):
    import datasets

    from recipe.data.sources import load_source

    def offline_load_dataset(path, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", offline_load_dataset)
    with pytest.raises(UnavailableError) as error:
        load_source("someone/kmr-tts", cache_dir=str(tmp_path / "datasets-cache"))
    message = str(error.value)
    assert message.startswith("--dataset_name 'someone/kmr-tts': HF_DATASETS_OFFLINE=1 is set")
    assert str(tmp_path / "datasets-cache") in message
    # cached by datasets (`owner___name`): the loader's own error is kept
    (tmp_path / "datasets-cache" / "someone___kmr-tts").mkdir(parents=True)
    with pytest.raises(ConnectionError, match="OfflineModeIsEnabled"):
        load_source("someone/kmr-tts", cache_dir=str(tmp_path / "datasets-cache"))


def test_a_path_that_does_not_exist_is_no_such_folder_not_a_hub_id(tmp_path, monkeypatch, hub_unreachable):
    from recipe.voices import load_voice_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("./round1", "/nowhere/round1", "runs/round1", "round1/", "~/round1"):
        assert looks_like_path(name), name
        with pytest.raises(
            MissingInputError, match=re.escape(f"--model_name_or_path {name!r}: no such folder or file.")
        ):
            load_voice_config(name)
    assert not looks_like_path("someone/voice") and not looks_like_path("voice")
    assert looks_like_path("one/two/three")  # more separators than a Hub id (owner/name) has
    with pytest.raises(MissingInputError, match="no such folder or file, and not a Hub id"):
        check_hub_name("two words", "--model_name_or_path")
    assert recipe.hub_access._reachability == {}  # none of them asked the Hub


def test_a_refused_pickle_is_named_without_suggesting_weights_only_false(tmp_path):
    from recipe.hub_access import RefusedPickleError
    from recipe.model.discriminator import HUB_PICKLE_FILE, load_discriminator

    folder = tmp_path / "old-train"
    folder.mkdir()
    torch.save({"discriminator.weight": torch.zeros(1), "hook": Evil()}, folder / HUB_PICKLE_FILE)
    with pytest.raises(RefusedPickleError) as error:
        load_discriminator(str(folder))
    message = str(error.value)
    assert message.startswith(f"{folder / HUB_PICKLE_FILE}: holds pickled objects other than tensors (posix.getcwd)")
    assert "refused for safety" in message and "trusted source" in message and "weights_only" not in message
    assert "\n" not in refused_pickle_message("x.pt", ValueError("no global named"))


def test_run_finetune_with_an_unreachable_hub_fails_in_seconds_with_one_line(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": UNREACHABLE}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", DEBUG_VARIABLE):
        env.pop(name, None)
    command = [
        sys.executable, "run_finetune.py", "--model_name_or_path", "someone/voice",
        "--dataset_name", str(DEMO_DIR / "kmr_ljspeech"), "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    elapsed = time.monotonic() - started
    assert completed.returncode == 3, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr and "Retrying" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("run_finetune.py: error: ")]
    assert len(errors) == 1 and "--model_name_or_path 'someone/voice'" in errors[0] and UNREACHABLE in errors[0]
    assert elapsed < 60, elapsed  # imports included; the check itself is one refused connection
