"""A tiny random VITS configuration for the tests, the benchmarks and the measuring scripts: small enough to train on
a CPU in seconds, with the STFT geometry of a real MMS model so that spectrograms, hops and segments are real."""

from __future__ import annotations

from transformers import VitsConfig


def make_tiny_config(**overrides) -> VitsConfig:
    """A `VitsConfig` small enough for CPU tests, with MMS's STFT geometry (16 kHz, n_fft 1024, hop 8 x 8 x 4 = 256).

    Args:
        overrides: `VitsConfig` fields that replace the tiny values (e.g. `vocab_size`, `layerdrop`).
    """
    values = dict(
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
    values.update(overrides)
    return VitsConfig(**values)
