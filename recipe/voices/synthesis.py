"""Deterministic, timed synthesis of one sentence: the inference path every monitor, comparison and export check
hears."""

from __future__ import annotations

import time

import numpy as np
import torch


def synthesize(model, tokenizer, text: str, seed: int = 0, speaker_id: int | None = None) -> tuple[np.ndarray, float]:
    """Synthesize one sentence deterministically and time it.

    The model is switched to eval mode for the call (no dropout) and put back in the mode it was in, so the
    trainer can call this between steps. `seed` is set right before the forward because the duration predictor
    and the prior sample noise.

    Args:
        model (`VitsModel`): the model, on any device.
        tokenizer (`VitsTokenizer`): its tokenizer; `text` goes through `recipe.text.encode_text` (NFC, uroman when
            the tokenizer asks for it, the tokenizer's own normalization), as in training.
        text (`str`): the sentence.
        seed (`int`, *optional*, defaults to 0): seed of the sampled noise.
        speaker_id (`int`, *optional*): speaker index for a multi-speaker model; ignored by a single-speaker one.

    Returns:
        `tuple(np.ndarray, float)`: the float32 waveform `(num_samples,)` at `model.config.sampling_rate`, and the
        wall-clock seconds the forward took.
    """
    from transformers import set_seed

    from recipe.text import encode_text

    # the tokenization of training (NFC, uroman once per process), so that the model hears what it learned
    _, token_ids = encode_text(text, tokenizer)
    if not token_ids:
        raise ValueError(f"The tokenizer turned {text!r} into no tokens: none of its characters is in the vocabulary")
    device = next(model.parameters()).device
    input_ids = torch.tensor([token_ids], dtype=torch.long, device=device)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    num_speakers = getattr(model.config, "num_speakers", 1)
    if speaker_id is not None and num_speakers > 1 and not 0 <= speaker_id < num_speakers:
        raise ValueError(f"speaker_id {speaker_id} is out of range for a model with {num_speakers} speakers")
    extra = {"speaker_id": int(speaker_id)} if speaker_id is not None and num_speakers > 1 else {}

    was_training = model.training
    model.eval()
    try:
        set_seed(seed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            output = model(**inputs, **extra)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
    num_samples = int(output.sequence_lengths[0]) if output.sequence_lengths is not None else output.waveform.shape[-1]
    waveform = output.waveform[0, :num_samples].float().cpu().numpy()
    return waveform, seconds
