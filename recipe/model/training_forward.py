"""The VITS training forward pass on a stock `transformers.VitsModel`, using its submodules (no fork of the model).

    text encoder -> prior mean / log-std per token
    posterior encoder(linear spectrogram of the waveform) -> z, posterior mean / log-std per frame
    flow(z) -> z_p;  monotonic alignment search on log N(z_p; prior) -> durations -> prior expanded to frames
    duration predictor loss on the durations;  KL(posterior || aligned prior)
    random segment of z -> HiFi-GAN decoder -> waveform segment, against the same segment of the recording

The model is made ready for training (decoder weight norm, no layer drop, freezing) by `recipe.model.preparation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import VitsModel

from recipe.audio import LOG_MEL_FLOOR, SpectrogramConfig, linear_spectrogram, log_mel_spectrogram
from recipe.model.alignment import durations_from_alignment, monotonic_alignment, prior_log_likelihood
from recipe.model.duration import stochastic_duration_nll


@dataclass
class VitsTrainingOutput:
    """What `VitsForTraining.forward` returns: the decoded segment, its target, and what the KL / duration losses need.

    Args:
        generated_waveform (`(B, 1, S * hop)`): the decoded segment, zero past the end of a short clip.
        target_waveform (`(B, 1, S * hop)`): the same segment of the recording.
        generated_log_mel (`(B, num_mel_bins, S)`): `log_mel_spectrogram(generated_waveform)`.
        target_log_mel (`(B, num_mel_bins, S)`): the same frames of the cached log-mel.
        segment_frame_mask (`(B, 1, S)`), segment_sample_mask (`(B, 1, S * hop)`): 1 inside the clip (a clip
            shorter than the segment is padded).
        segment_starts (`(B,)`): first frame of each segment.
        prior_latents (`(B, C, T)`): `z_p = flow(z)`.
        posterior_log_stddev (`(B, C, T)`): log-std of the posterior.
        prior_means, prior_log_stddev (`(B, C, T)`): the text prior expanded to frames along the alignment.
        frame_mask (`(B, 1, T)`), text_mask (`(B, 1, N)`).
        alignment (`(B, N, T)`): the monotonic alignment (0 / 1). durations (`(B, 1, N)`): frames per token.
        duration_nll (`(B,)`, *optional*): stochastic duration predictor's NLL (when the model has one).
        predicted_log_durations (`(B, 1, N)`, *optional*): deterministic duration predictor's output.
    """

    generated_waveform: torch.Tensor
    target_waveform: torch.Tensor
    generated_log_mel: torch.Tensor
    target_log_mel: torch.Tensor
    segment_frame_mask: torch.Tensor
    segment_sample_mask: torch.Tensor
    segment_starts: torch.Tensor
    prior_latents: torch.Tensor
    posterior_log_stddev: torch.Tensor
    prior_means: torch.Tensor
    prior_log_stddev: torch.Tensor
    frame_mask: torch.Tensor
    text_mask: torch.Tensor
    alignment: torch.Tensor
    durations: torch.Tensor
    duration_nll: torch.Tensor | None = None
    predicted_log_durations: torch.Tensor | None = None


def _lengths_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """`(B,)` lengths -> `(B, max_length)` float mask."""
    return (torch.arange(max_length, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)).float()


def _slice_segments(values: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """`values[b, :, starts[b] : starts[b] + length]` for each `b` (the caller pads `values` to be long enough)."""
    indices = starts.view(-1, 1, 1) + torch.arange(length, device=values.device).view(1, 1, -1)
    return torch.gather(values, 2, indices.expand(values.shape[0], values.shape[1], length))


def _pad_to(values: torch.Tensor, length: int, value: float = 0.0) -> torch.Tensor:
    return (
        nn.functional.pad(values, (0, length - values.shape[-1]), value=value) if values.shape[-1] < length else values
    )


class VitsForTraining(nn.Module):
    """Wraps a `VitsModel` with the VITS training forward pass.

    Args:
        vits (`VitsModel`): the model being trained (`.vits`); its parameters are this module's parameters.
        segment_size (`int`): latent frames decoded per utterance and step (32 frames = 8192 samples at hop 256).
    """

    def __init__(self, vits: VitsModel, segment_size: int):
        super().__init__()
        if segment_size < 1:
            raise ValueError(f"segment_size must be positive, not {segment_size}")
        self.vits = vits
        self.segment_size = segment_size
        self.spectrogram_config = SpectrogramConfig.from_model_config(vits.config)

    def _speaker_embeddings(self, speaker_id: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        config = self.vits.config
        if config.num_speakers <= 1:
            return None
        if speaker_id is None:
            raise ValueError(f"The model has {config.num_speakers} speakers: the batch needs a speaker_id")
        speaker_id = torch.as_tensor(speaker_id, device=self.vits.device).long().reshape(-1).expand(batch_size)
        if bool(((speaker_id < 0) | (speaker_id >= config.num_speakers)).any()):
            raise ValueError(f"speaker_id {speaker_id.tolist()} outside 0..{config.num_speakers - 1}")
        return self.vits.embed_speaker(speaker_id).unsqueeze(-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        waveform: torch.Tensor,
        waveform_lengths: torch.Tensor,
        log_mel: torch.Tensor,
        mel_lengths: torch.Tensor,
        speaker_id: torch.Tensor | None = None,
        **_,
    ) -> VitsTrainingOutput:
        """One training forward pass on a `VitsDataCollator` batch (extra batch keys are ignored).

        Args:
            input_ids, attention_mask (`(B, N)`); waveform (`(B, T * hop)`); waveform_lengths (`(B,)`);
            log_mel (`(B, num_mel_bins, T)`); mel_lengths (`(B,)`, frames); speaker_id (`(B,)`, *optional*).
        """
        vits, hop, segment = self.vits, self.spectrogram_config.hop_length, self.segment_size
        batch_size = input_ids.shape[0]
        num_frames = log_mel.shape[-1]
        if waveform.shape[-1] < num_frames * hop:
            raise ValueError(
                f"waveform has {waveform.shape[-1]} samples, fewer than the log_mel's {num_frames} frames x hop {hop}"
            )
        waveform = waveform[:, : num_frames * hop].float()
        mel_lengths = torch.minimum(mel_lengths.long(), waveform_lengths.long() // hop)
        speaker_embeddings = self._speaker_embeddings(speaker_id, batch_size)

        # Text encoder: prior mean and log-std per token.
        mask_dtype = vits.text_encoder.embed_tokens.weight.dtype
        text_padding = attention_mask.unsqueeze(-1).to(mask_dtype)
        encoded = vits.text_encoder(input_ids=input_ids, padding_mask=text_padding, attention_mask=attention_mask)
        hidden_states = encoded.last_hidden_state.transpose(1, 2)  # (B, H, N)
        prior_means = encoded.prior_means.transpose(1, 2)  # (B, C, N)
        prior_log_stddev = encoded.prior_log_variances.transpose(1, 2)  # VITS's logs_p: a log standard deviation
        text_mask = text_padding.transpose(1, 2)  # (B, 1, N)

        # Posterior encoder on the linear spectrogram of the recording (a fixed function of the data: no grad).
        frame_mask = _lengths_mask(mel_lengths, num_frames).unsqueeze(1).to(mask_dtype)  # (B, 1, T)
        with torch.no_grad():
            spectrogram = linear_spectrogram(waveform, self.spectrogram_config)[..., :num_frames]
        latents, _, posterior_log_stddev = vits.posterior_encoder(spectrogram, frame_mask, speaker_embeddings)
        prior_latents = vits.flow(latents, frame_mask, speaker_embeddings)

        # Monotonic alignment search on the prior log-likelihood of z_p -> durations.
        with torch.no_grad():
            log_likelihood = prior_log_likelihood(prior_latents, prior_means, prior_log_stddev)
            alignment = monotonic_alignment(log_likelihood, attention_mask, frame_mask[:, 0])
        durations = durations_from_alignment(alignment)

        duration_nll = predicted_log_durations = None
        if vits.config.use_stochastic_duration_prediction:
            # VITS's flow order, not transformers' `reverse=False` path (see recipe/model/duration.py)
            duration_nll = stochastic_duration_nll(
                vits.duration_predictor, hidden_states, text_mask, durations, speaker_embeddings
            )
        else:
            predicted_log_durations = vits.duration_predictor(hidden_states, text_mask, speaker_embeddings)

        # The text prior expanded to frames along the alignment: (B, C, N) @ (B, N, T).
        alignment_float = alignment.to(prior_means.dtype)
        prior_means_frames = torch.matmul(prior_means, alignment_float)
        prior_log_stddev_frames = torch.matmul(prior_log_stddev, alignment_float)

        # A random segment per utterance within its length; clips shorter than a segment start at 0 and are padded.
        max_start = (mel_lengths - segment + 1).clamp_min(1)
        starts = (torch.rand(batch_size, device=latents.device) * max_start).long()
        padded_frames = max(num_frames, segment)
        latent_segments = _slice_segments(_pad_to(latents, padded_frames), starts, segment)
        segment_frame_mask = _lengths_mask(mel_lengths - starts, segment).unsqueeze(1)  # (B, 1, S)
        segment_sample_mask = segment_frame_mask.repeat_interleave(hop, dim=2)  # (B, 1, S * hop)
        target_waveform = _slice_segments(
            _pad_to(waveform.unsqueeze(1), padded_frames * hop), starts * hop, segment * hop
        )
        silence = float(torch.log(torch.tensor(LOG_MEL_FLOOR)))
        target_log_mel = _slice_segments(_pad_to(log_mel.float(), padded_frames, silence), starts, segment)

        generated_waveform = vits.decoder(latent_segments, speaker_embeddings)
        # Past the end of a short clip the target is silence; the decoded padding is cut the same way.
        generated_waveform = generated_waveform * segment_sample_mask.to(generated_waveform.dtype)
        generated_log_mel = log_mel_spectrogram(generated_waveform.squeeze(1), self.spectrogram_config)

        return VitsTrainingOutput(
            generated_waveform=generated_waveform,
            target_waveform=target_waveform * segment_sample_mask,
            generated_log_mel=generated_log_mel,
            target_log_mel=target_log_mel,
            segment_frame_mask=segment_frame_mask,
            segment_sample_mask=segment_sample_mask,
            segment_starts=starts,
            prior_latents=prior_latents,
            posterior_log_stddev=posterior_log_stddev,
            prior_means=prior_means_frames,
            prior_log_stddev=prior_log_stddev_frames,
            frame_mask=frame_mask,
            text_mask=text_mask,
            alignment=alignment,
            durations=durations,
            duration_nll=duration_nll,
            predicted_log_durations=predicted_log_durations,
        )
