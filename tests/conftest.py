"""Shared fixtures: the demo folder, and tiny random VITS configs whose STFT geometry is real (513 bins, hop 256,
16 kHz; `recipe.model.tiny.make_tiny_config`, which the tests import from here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# after the environment above: transformers (through huggingface_hub) reads it when first imported
from recipe.model.tiny import make_tiny_config  # noqa: E402

# Tiny models on 2 cores: intra-op threads cost more than they give (measured: a per-clip STFT 180 ms with 2
# threads, 1 ms with 1), and pytest-xdist already runs one worker per core.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "demo"


@pytest.fixture
def tiny_config():
    return make_tiny_config()


@pytest.fixture(scope="module")
def tokenizer():
    """The demo's Kurmanji character tokenizer (`demo/tiny_model`); a test module may define its own."""
    from transformers import VitsTokenizer

    return VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))


@pytest.fixture(scope="module")
def model_config(tokenizer):
    """A tiny config whose vocabulary is the `tokenizer`'s."""
    return make_tiny_config(vocab_size=len(tokenizer))


def load_benchmark(name: str):
    """`benchmarks/<name>.py` as a module (the scripts are not a package; they import each other from their folder)."""
    import importlib.util
    import sys

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cache_key_inputs():
    """A fixed LJSpeech `Source` (no splits, a constant fingerprint), the demo tokenizer and its spectrogram
    geometry: what `recipe.data.feature_cache.feature_cache_key` takes besides the arguments."""
    from transformers import VitsConfig, VitsTokenizer

    from recipe.audio import SpectrogramConfig
    from recipe.data.source import Source

    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    spectrogram = SpectrogramConfig.from_model_config(VitsConfig.from_pretrained(str(DEMO_DIR / "tiny_model")))
    source = Source(
        splits={},
        audio_column="id",
        text_column="text",
        speaker_column=None,
        root=None,
        fingerprint="0" * 64,
        format="ljspeech",
    )
    return source, tokenizer, spectrogram
