"""Warm up what an imported voice lacks by inverting its own synthesis: the posterior encoder and the duration
predictor's posterior flows.

An ONNX voice has no posterior encoder (spectrogram -> latent z) and no posterior flows of its duration predictor:
training needs both, and starting them from random weights means the first fine-tuning steps train the decoder on
latents that do not describe the recording. Training them through the VITS objectives (mel through the frozen
decoder, KL to the frozen prior) is slow: 120 steps on 12 minutes of the Joe voice took 33 CPU minutes and left the
reconstruction far from the recording (`benchmarks/real_voice.py`, docs/piper.md, "Warm-up").

The voice itself knows the answer. For each text of the user's data, its inference pass gives the latent `z` it
decodes (prior sample through the reversed flow, voice's noise scales) and the durations it chose; the decoder turns
`z` into audio. The posterior encoder is then trained to read `z` back from that audio's spectrogram (Gaussian
error of its mean, Gaussian likelihood of the residual for its spread), and the duration predictor's posterior flows
on the durations (the recipe's VITS-order NLL, `recipe.model.duration`). Everything inference uses stays frozen; no
decoder backward pass is needed. (`run_finetune.py --warmup_untrained_parts` is the slower alternative, through the
VITS objectives on the recordings: docs/piper.md, "Warm-up".)

Most of the time goes to two phases, each logged from its first item with its rate and ETA (`ProgressLog`): the
voice's synthesis of every text (espeak's phonemes are quick; the decoder's forward is not: about 0.5 s per sentence
of the Joe voice on CPU), then the optimizer steps (2-4 s each for the Joe voice on CPU).
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from recipe.audio import SpectrogramConfig, linear_spectrogram
from recipe.data.source import DataError
from recipe.errors import ArgumentsError
from recipe.model.duration import stochastic_duration_nll
from recipe.text import encode_text

logger = logging.getLogger(__name__)

# The defaults of `warm_up_from_own_synthesis`, `python -m recipe.piper warmup` and `benchmarks/real_voice.py`,
# measured on the Joe voice (docs/results.md, "Piper voices"): its posterior loss fell from 10.8 to 0.38.
WARMUP_STEPS = 400
WARMUP_LEARNING_RATE = 6e-4
WARMUP_BATCH_SIZE = 8


class ProgressLog:
    """When a long loop logs its progress, and the rate and ETA it logs: each of the first `first` items (the first
    step's time is what a user needs to judge the run), then every `every` items or `seconds` apart, whichever comes
    first, and the last.

    Args:
        total (`int`): the items the loop will do.
        unit (`str`): what an item is, for the rate ("s/step").
        first (`int`, *optional*, defaults to 3), every (`int`, *optional*, defaults to 25), seconds (`float`,
            *optional*, defaults to 30.0): see above.
        clock (`Callable[[], float]`, *optional*): defaults to `time.monotonic`.
    """

    def __init__(
        self,
        total: int,
        unit: str,
        first: int = 3,
        every: int = 25,
        seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.unit, self.clock = total, unit, clock
        self.first, self.every, self.seconds = first, every, seconds
        self.started = self.clock()
        self._logged_done, self._logged_at = 0, self.started

    def due(self, done: int) -> bool:
        """Whether to log after `done` items (counted from 1); when it is, the next interval starts now."""
        now = self.clock()
        due = (
            done <= self.first
            or done >= self.total
            or done - self._logged_done >= self.every
            or now - self._logged_at >= self.seconds
        )
        if due:
            self._logged_done, self._logged_at = done, now
        return due

    def rate_and_eta(self, done: int) -> str:
        """`"2.31 s/step, ETA 0:14:12"`: the mean time per item so far, times the items left."""
        per_item = (self.clock() - self.started) / max(1, done)
        eta = datetime.timedelta(seconds=round(per_item * max(0, self.total - done)))
        return f"{per_item:.2f} {self.unit}, ETA {eta}"


@dataclass
class SynthesisTarget:
    """What the voice's own inference produced for one text: token ids, the latent it decoded, its durations and
    the waveform."""

    input_ids: torch.Tensor  # (N,)
    latents: torch.Tensor  # (C, T)
    durations: torch.Tensor  # (N,)
    waveform: torch.Tensor  # (T * hop,)


@torch.no_grad()
def synthesize_targets(vits, input_ids: torch.Tensor) -> SynthesisTarget:
    """transformers' `VitsModel` inference pass for one utterance, keeping the latent and the durations it used."""
    mask = torch.ones(1, 1, input_ids.shape[0])
    encoded = vits.text_encoder(
        input_ids=input_ids[None], padding_mask=mask.transpose(1, 2), attention_mask=torch.ones_like(input_ids[None])
    )
    hidden = encoded.last_hidden_state.transpose(1, 2)
    log_durations = vits.duration_predictor(hidden, mask, None, reverse=True, noise_scale=vits.noise_scale_duration)
    durations = torch.ceil(torch.exp(log_durations) * mask / vits.speaking_rate).clamp_min(1)[0, 0].long()
    frames = torch.repeat_interleave(torch.arange(input_ids.shape[0]), durations)
    means = encoded.prior_means[0][frames].T[None]  # (1, C, T)
    log_stddev = encoded.prior_log_variances[0][frames].T[None]
    prior_latents = means + torch.randn_like(means) * torch.exp(log_stddev) * vits.noise_scale
    frame_mask = torch.ones(1, 1, prior_latents.shape[-1])
    latents = vits.flow(prior_latents, frame_mask, None, reverse=True)
    waveform = vits.decoder(latents)[0, 0]
    return SynthesisTarget(input_ids=input_ids, latents=latents[0], durations=durations, waveform=waveform)


def posterior_loss(means: torch.Tensor, log_stddev: torch.Tensor, latents: torch.Tensor, mask: torch.Tensor):
    """Squared error of the posterior mean, plus the Gaussian NLL of the residual for the log-std, per latent value.

    The two are split (the residual is detached in the log-std term) because the joint Gaussian NLL is unstable from
    a random start: its log-std term keeps pulling the spread down while the mean is still wrong, and the squared
    residual over a tiny spread explodes (measured: 67 -> 2e5 in two steps at learning rate 1e-3).
    """
    residual = (latents - means) * mask
    count = (mask.sum() * latents.shape[1]).clamp_min(1.0)
    mean_term = 0.5 * (residual**2).sum() / count
    spread = log_stddev.clamp_min(-7.0)
    spread_term = ((spread + 0.5 * residual.detach() ** 2 * torch.exp(-2.0 * spread)) * mask).sum() / count
    return mean_term + spread_term


def _pad_stack(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    return torch.stack([nn.functional.pad(t, (0, length - t.shape[-1])) for t in tensors])


def synthesize_all(vits, tokenizer, texts: list[str]) -> list[SynthesisTarget]:
    """The voice's own synthesis of each text that gives a token (`synthesize_targets`), its progress logged.

    Raises:
        `DataError` (a `ValueError`) when no text gives a token.
    """
    logger.info(f"Synthesizing {len(texts)} texts with the voice: the targets the warm-up learns to read back")
    progress = ProgressLog(len(texts), "s/text")
    targets = []
    for done, text in enumerate(texts, start=1):
        _, ids = encode_text(text, tokenizer)
        if ids:
            targets.append(synthesize_targets(vits, torch.tensor(ids)))
        if progress.due(done):
            logger.info(f"synthesized {done}/{len(texts)} texts | {progress.rate_and_eta(done)}")
    if not targets:
        raise DataError(f"None of the {len(texts)} texts gave a token of the voice: nothing to warm up on")
    return targets


def warm_up_from_own_synthesis(
    vits,
    tokenizer,
    texts: list[str],
    steps: int = WARMUP_STEPS,
    learning_rate: float = WARMUP_LEARNING_RATE,
    batch_size: int = WARMUP_BATCH_SIZE,
    seed: int = 0,
    precision: str = "fp32",
) -> dict:
    """Train the posterior encoder and the duration predictor's posterior flows on the voice's own synthesis.

    Args:
        vits (`VitsModel`): an imported voice; only `posterior_encoder`, `duration_predictor.post_*` and
            `duration_predictor.flows.1` (the ConvFlow inference skips) are trained.
        tokenizer: its tokenizer (`recipe.voices.load_tokenizer`).
        texts (`list[str]`): sentences, e.g. the transcripts of the user's data.
        steps (`int`, *optional*, defaults to `WARMUP_STEPS`): optimizer steps.
        learning_rate (`float`, *optional*, defaults to `WARMUP_LEARNING_RATE`): AdamW, 10% linear warm-up, then
            cosine decay.
        batch_size (`int`, *optional*, defaults to `WARMUP_BATCH_SIZE`): utterances per step.
        seed (`int`, *optional*, defaults to 0).
        precision (`str`, *optional*, defaults to "fp32"): "bf16" runs the encoders' and the duration predictor's
            forward under bf16 autocast, as a bf16 fine-tune does; the targets are synthesized, and the spectrograms
            and both losses computed, in fp32.

    Returns:
        `dict`: the posterior loss of the untouched encoder (`posterior_loss_start`), the posterior loss and duration
        NLL averaged over the first and the last steps, the number of targets and the seconds taken.

    Raises:
        `DataError` when no text gives a token; `ArgumentsError` when the posterior loss did not fall (too few steps,
        or a learning rate the random posterior encoder diverges at): a fine-tune from that posterior meets a KL in
        the 1e30s. Both are `ValueError`s and input errors (`recipe.errors`).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
    torch.manual_seed(seed)
    started = time.monotonic()
    vits.eval()
    spectrogram_config = SpectrogramConfig.from_model_config(vits.config)
    targets = synthesize_all(vits, tokenizer, texts)
    synthesis_seconds = time.monotonic() - started

    trained = [
        parameter
        for name, parameter in vits.named_parameters()
        if name.startswith(("posterior_encoder.", "duration_predictor.post_", "duration_predictor.flows.1."))
    ]
    for parameter in vits.parameters():
        parameter.requires_grad_(False)
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=learning_rate, betas=(0.8, 0.99), weight_decay=0.0)
    warmup_steps = max(1, steps // 10)  # linear warm-up: the first steps move a random network the most

    def learning_rate_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, steps - warmup_steps)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)
    generator = torch.Generator().manual_seed(seed)
    history = []
    logger.info(
        f"Training the posterior encoder and the duration predictor's posterior flows: {steps} steps of "
        f"{min(batch_size, len(targets))} utterances at learning rate {learning_rate:g}"
    )
    progress = ProgressLog(steps, "s/step")
    for step in range(steps):
        batch = [
            targets[i] for i in torch.randint(len(targets), (min(batch_size, len(targets)),), generator=generator)
        ]
        frames = max(t.latents.shape[-1] for t in batch)
        tokens = max(t.input_ids.shape[0] for t in batch)
        waveforms = _pad_stack([t.waveform for t in batch], frames * spectrogram_config.hop_length)
        latents = _pad_stack([t.latents for t in batch], frames)
        frame_mask = _pad_stack([torch.ones(1, t.latents.shape[-1]) for t in batch], frames)
        text_mask = _pad_stack([torch.ones(1, t.input_ids.shape[0]) for t in batch], tokens)
        input_ids = _pad_stack([t.input_ids for t in batch], tokens).long()
        durations = _pad_stack([t.durations.float()[None] for t in batch], tokens)
        spectrogram = linear_spectrogram(waveforms, spectrogram_config)[..., :frames]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            _, means, log_stddev = vits.posterior_encoder(spectrogram, frame_mask)
            with torch.no_grad():
                hidden = vits.text_encoder(
                    input_ids=input_ids, padding_mask=text_mask.transpose(1, 2), attention_mask=text_mask[:, 0].long()
                ).last_hidden_state.transpose(1, 2)
            duration_nll = stochastic_duration_nll(vits.duration_predictor, hidden, text_mask, durations)
        latent_loss = posterior_loss(means.float(), log_stddev.float(), latents, frame_mask)
        duration_loss = duration_nll.float().sum() / text_mask.sum()
        optimizer.zero_grad()
        (latent_loss + duration_loss).backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        schedule.step()
        history.append((float(latent_loss.detach()), float(duration_loss.detach())))
        if progress.due(step + 1):
            latent_loss_value, duration_loss_value = history[-1]
            logger.info(
                f"warm-up step {step + 1}/{steps}: posterior loss {latent_loss_value:.3f}, "
                f"duration NLL {duration_loss_value:.3f} | {progress.rate_and_eta(step + 1)}"
            )
    for parameter in vits.parameters():
        parameter.requires_grad_(True)
    window = max(1, min(25, steps // 4))
    report = {
        "targets": len(targets),
        "steps": steps,
        "precision": precision,
        "synthesis_seconds": round(synthesis_seconds, 1),
        "seconds": round(time.monotonic() - started, 1),
        "posterior_loss_start": history[0][0],
        "posterior_loss_first": sum(h[0] for h in history[:window]) / window,
        "posterior_loss_last": sum(h[0] for h in history[-window:]) / window,
        "duration_nll_first": sum(h[1] for h in history[:window]) / window,
        "duration_nll_last": sum(h[1] for h in history[-window:]) / window,
    }
    # Against the untouched encoder's loss, not the first window's: a too-large first step spikes the loss (measured
    # on the Joe voice: 48 -> 3500 at the second of 10 steps, ending at 115), and the spike would hide it. After 2
    # such steps the fine-tune logged a KL of 5e30.
    if not report["posterior_loss_last"] < report["posterior_loss_start"]:
        raise ArgumentsError(
            f"The warm-up did not lower the posterior loss ({report['posterior_loss_start']:.4g} at the start, "
            f"{report['posterior_loss_last']:.4g} at the end of {steps} steps at learning rate {learning_rate:g}): "
            "the posterior encoder is not ready to fine-tune from. Use more steps "
            f"({WARMUP_STEPS} at {WARMUP_LEARNING_RATE:g} measured on the Joe voice) or a lower learning rate."
        )
    return report
