"""Shared fixtures: tiny random VITS configs whose STFT geometry is real (513 bins, hop 256, 16 kHz)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on 2 cores: intra-op threads cost more than they give (measured: a per-clip STFT 180 ms with 2
# threads, 1 ms with 1), and pytest-xdist already runs one worker per core.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "demo"


def make_tiny_config(**overrides):
    """A `VitsConfig` small enough for CPU tests, with MMS's STFT geometry (n_fft 1024, hop 8 x 8 x 4 = 256)."""
    from transformers import VitsConfig

    kwargs = dict(
        vocab_size=48,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=513,
        upsample_initial_channel=32,
        upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2,
        posterior_encoder_num_wavenet_layers=2,
        duration_predictor_num_flows=2,
        duration_predictor_filter_channels=16,
        depth_separable_num_layers=2,
        sampling_rate=16000,
    )
    kwargs.update(overrides)
    return VitsConfig(**kwargs)


@pytest.fixture
def tiny_config():
    return make_tiny_config()
