"""Pads cached features into a training batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recipe.audio import LOG_MEL_FLOOR, SpectrogramConfig


@dataclass
class VitsDataCollator:
    """Pads `input_ids`, `waveform` and `log_mel` of cached features to the longest example of the batch.

    Waveforms are cut to a whole number of hops so that frame `i` of the spectrogram covers samples
    `[i * hop, (i + 1) * hop)` of the waveform; the mel target is cut to the same number of frames.

    Returns a dict of tensors:
        - `input_ids` (`(batch, max_tokens)`, long), padded with `pad_token_id`; `attention_mask` (same shape).
        - `waveform` (`(batch, max_frames * hop)`, float32), zero-padded; `waveform_lengths` (`(batch,)`).
        - `log_mel` (`(batch, num_mel_bins, max_frames)`, float32), padded with log(1e-5) (silence);
          `mel_lengths` (`(batch,)`) frames, equal to `waveform_lengths // hop`.
        - `speaker_id` (`(batch,)`, long).
        - `paths` (`list[str]`), when the features have a `path` column: the clips of the batch, for the trainer to
          name in its reports (a non-finite loss); not a model input.
    """

    spectrogram_config: SpectrogramConfig
    pad_token_id: int = 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        hop = self.spectrogram_config.hop_length
        token_lengths = [len(f["input_ids"]) for f in features]
        frame_lengths = [min(len(f["waveform"]) // hop, len(f["log_mel"])) for f in features]
        batch_size, max_tokens, max_frames = len(features), max(token_lengths), max(frame_lengths)

        input_ids = torch.full((batch_size, max_tokens), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, max_tokens), dtype=torch.long)
        waveform = torch.zeros((batch_size, max_frames * hop), dtype=torch.float32)
        num_mels = self.spectrogram_config.num_mel_bins
        log_mel = torch.full((batch_size, num_mels, max_frames), float(torch.log(torch.tensor(LOG_MEL_FLOOR))))
        for i, feature in enumerate(features):
            tokens, frames = token_lengths[i], frame_lengths[i]
            input_ids[i, :tokens] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            attention_mask[i, :tokens] = 1
            waveform[i, : frames * hop] = torch.as_tensor(feature["waveform"], dtype=torch.float32)[: frames * hop]
            # cached as (frames, num_mel_bins): Arrow's Array2D allows a variable first dimension only
            log_mel[i, :, :frames] = torch.as_tensor(feature["log_mel"], dtype=torch.float32)[:frames].T
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "waveform": waveform,
            "waveform_lengths": torch.tensor([n * hop for n in frame_lengths], dtype=torch.long),
            "log_mel": log_mel,
            "mel_lengths": torch.tensor(frame_lengths, dtype=torch.long),
            "speaker_id": torch.tensor([int(f.get("speaker_id", 0) or 0) for f in features], dtype=torch.long),
        }
        if all("path" in f for f in features):
            batch["paths"] = [str(f["path"]) for f in features]
        return batch
