"""Effects of the training objectives, on CPU with a tiny random VITS and one demo utterance.

    python benchmarks/objective_effects.py overfit      # 200-step overfit, with and without a discriminator
    python benchmarks/objective_effects.py amplitude    # recovery from a decoder whose output is scaled by 0.1
    python benchmarks/objective_effects.py amplitude --amplitude_weight 1   # the same recovery with weight 1
    python benchmarks/objective_effects.py normalized   # plain vs normalized mel loss of loud / quiet copies
    python benchmarks/objective_effects.py mas          # monotonic alignment search speed
    python benchmarks/objective_effects.py all

Every number printed comes from the run; `--seed` fixes the model, the segments and the noise.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
from transformers import VitsConfig, VitsModel, VitsTokenizer, set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO_ROOT, read_clip  # noqa: E402

from recipe.audio import SpectrogramConfig, log_mel_spectrogram  # noqa: E402
from recipe.model.alignment import monotonic_alignment  # noqa: E402
from recipe.model.discriminator import DiscriminatorConfig, VitsDiscriminator  # noqa: E402
from recipe.model.losses import (  # noqa: E402
    LossWeights,
    discriminate,
    discriminator_objective,
    generator_objective,
    mel_loss,
    normalized_mel_loss,
)
from recipe.model.preparation import prepare_for_training  # noqa: E402
from recipe.model.tiny import make_tiny_config  # noqa: E402
from recipe.model.training_forward import VitsForTraining  # noqa: E402
from recipe.text import encode_text  # noqa: E402

DEMO_CLIP = os.path.join(REPO_ROOT, "demo", "kmr_ljspeech", "wavs", "KMR-0004.wav")
DEMO_TEXT = "Spas ji bo alîkariya te."  # replaced by the metadata.csv text of the clip when present
TOKENIZER = os.path.join(REPO_ROOT, "demo", "tiny_model")
# A reduced discriminator (same structure as VITS's, 1/16 of the channels): the full 46.7 M-parameter one makes 200
# CPU steps take ~10 minutes.
SMALL_DISCRIMINATOR = DiscriminatorConfig(period_channels=[1, 16, 32, 64], scale_channels=[1, 16, 64, 256])


def tiny_config(vocab_size: int) -> VitsConfig:
    """The tests' tiny config (`recipe.model.tiny`), with LayerDrop off so that runs are comparable."""
    return make_tiny_config(vocab_size=vocab_size, layerdrop=0.0)


def demo_batch(spectrogram_config):
    """One utterance as `VitsDataCollator` would batch it: the demo clip and its text, or the fallback text."""
    text = DEMO_TEXT
    metadata = os.path.join(os.path.dirname(os.path.dirname(DEMO_CLIP)), "metadata.csv")
    if os.path.isfile(metadata):
        clip_id = os.path.splitext(os.path.basename(DEMO_CLIP))[0]
        for line in open(metadata, encoding="utf-8"):
            fields = line.rstrip("\n").split("|")
            if fields[0] == clip_id:
                text = fields[-1]
    tokenizer = VitsTokenizer.from_pretrained(TOKENIZER)
    _, input_ids = encode_text(text, tokenizer)  # as training featurizes it
    input_ids = torch.tensor([input_ids])
    waveform = torch.from_numpy(read_clip(DEMO_CLIP, spectrogram_config.sampling_rate))
    frames = len(waveform) // spectrogram_config.hop_length
    waveform = waveform[: frames * spectrogram_config.hop_length][None]
    batch = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "waveform": waveform,
        "waveform_lengths": torch.tensor([waveform.shape[1]]),
        "log_mel": log_mel_spectrogram(waveform, spectrogram_config),
        "mel_lengths": torch.tensor([frames]),
    }
    return batch, len(tokenizer), text


def build(seed: int, segment_size: int | None = None):
    tokenizer_size = len(VitsTokenizer.from_pretrained(TOKENIZER))
    set_seed(seed)
    vits = prepare_for_training(VitsModel(tiny_config(tokenizer_size)))
    model = VitsForTraining(vits, segment_size=segment_size or 32)
    batch, _, text = demo_batch(model.spectrogram_config)
    if segment_size is None:  # the whole clip as one segment: deterministic segment RMS
        model.segment_size = int(batch["mel_lengths"][0])
    return model, batch, text


def train(model, batch, steps, weights, discriminator=None, learning_rate=1e-3, record=None):
    """Plain VITS loop: discriminator step on the detached segment, then the generator step. Returns per-step logs."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.8, 0.99))
    disc_optimizer = None
    if discriminator is not None:
        disc_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=learning_rate, betas=(0.8, 0.99))
    logs = []
    for _ in range(steps):
        outputs = model(**batch)
        if discriminator is not None:
            disc_loss, _ = discriminator_objective(discriminate(discriminator, outputs, detach_generated=True))
            disc_optimizer.zero_grad()
            disc_loss.backward()
            disc_optimizer.step()
        discriminated = discriminate(discriminator, outputs) if discriminator is not None else None
        loss, components = generator_objective(outputs, weights, discriminated)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        entry = {name: value.item() for name, value in components.items()}
        if record is not None:
            entry.update(record(outputs))
        logs.append(entry)
    return logs


def mean(values):
    return sum(values) / len(values)


def run_overfit(seed: int, steps: int):
    print(f"== overfit one utterance, {steps} steps, seed {seed}, lr 1e-3, segment 32 frames, tiny config ==")
    for label, use_discriminator in [("without discriminator", False), ("with discriminator", True)]:
        model, batch, text = build(seed, segment_size=32)
        torch.manual_seed(seed)
        discriminator = VitsDiscriminator(SMALL_DISCRIMINATOR) if use_discriminator else None
        started = time.perf_counter()
        logs = train(model, batch, steps, LossWeights(), discriminator)
        seconds = time.perf_counter() - started
        first, last = mean([e["mel"] for e in logs[:10]]), mean([e["mel"] for e in logs[-10:]])
        extra = ""
        if use_discriminator:
            extra = f", generator {logs[-1]['generator']:.3f}, feature_matching {logs[-1]['feature_matching']:.3f}"
        print(
            f"{label}: clip {os.path.basename(DEMO_CLIP)} ({batch['mel_lengths'].item()} frames, "
            f"{batch['input_ids'].shape[1]} tokens, text {text!r}); mel L1 mean of first 10 steps {first:.3f}, "
            f"of last 10 steps {last:.3f}: -{100 * (1 - last / first):.1f}%; kl {logs[-1]['kl']:.2f}, "
            f"duration {logs[-1]['duration']:.2f}{extra}; {seconds:.0f} s"
        )


def segment_rms_ratio(outputs):
    mask = outputs.segment_sample_mask
    generated = outputs.generated_waveform.detach().float().pow(2).mul(mask).sum() / mask.sum()
    target = outputs.target_waveform.float().pow(2).mul(mask).sum() / mask.sum()
    return {"rms_ratio": math.sqrt(generated.item() / target.item())}


def run_amplitude(seed: int, warmup_steps: int, steps: int, weight: float, warmup_weight: float):
    print(
        f"== amplitude recovery, seed {seed}: {warmup_steps} warm-up steps (amplitude weight {warmup_weight}), "
        f"decoder output x0.1, then {steps} steps with amplitude weight 0 and {weight} "
        f"(whole clip as the segment, lr 1e-3) =="
    )
    model, batch, _ = build(seed)
    # The warm-up uses the amplitude term too: a tiny model trained for ~100 steps on the mel loss alone is still
    # ~3x too quiet, and the comparison needs a start whose un-scaled output has the target's loudness. Its weight
    # is separate from the compared one, so that every compared weight starts from the same model.
    logs = train(model, batch, warmup_steps, LossWeights(amplitude=warmup_weight), record=segment_rms_ratio)
    print(f"after warm-up: generated / target RMS {logs[-1]['rms_ratio']:.3f}, mel {logs[-1]['mel']:.3f}")
    warm_state = {k: v.clone() for k, v in model.state_dict().items()}
    for amplitude_weight in [0.0, weight]:
        model.load_state_dict(warm_state)
        with torch.no_grad():  # conv_post has no bias: this scales the pre-tanh output by 0.1
            model.vits.decoder.conv_post.weight.mul_(0.1)
        torch.manual_seed(seed)
        logs = train(model, batch, steps, LossWeights(amplitude=amplitude_weight), record=segment_rms_ratio)
        ratios = [e["rms_ratio"] for e in logs]
        within = next((i + 1 for i, r in enumerate(ratios) if abs(r - 1) <= 0.3), None)
        print(
            f"amplitude weight {amplitude_weight}: RMS ratio at step 1 {ratios[0]:.3f}, step 10 {ratios[9]:.3f}, "
            f"step {steps} {ratios[-1]:.3f}; within 30% of the target first at step "
            f"{within if within else f'> {steps}'}; mel at the end {logs[-1]['mel']:.3f}"
        )


def run_normalized():
    print("== plain vs normalized mel loss of one clip at three gains (generated = 0.8 x clip + noise) ==")
    config = SpectrogramConfig.from_model_config(tiny_config(len(VitsTokenizer.from_pretrained(TOKENIZER))))
    clip = torch.from_numpy(read_clip(DEMO_CLIP, config.sampling_rate))
    generated = 0.8 * clip + 0.01 * torch.randn(len(clip), generator=torch.Generator().manual_seed(0))
    frames = len(clip) // config.hop_length
    samples = frames * config.hop_length
    mask = torch.ones(1, 1, frames)
    for gain in [1.0, 0.1, 0.01]:
        target_mel = log_mel_spectrogram((gain * clip[:samples])[None], config)
        generated_mel = log_mel_spectrogram((gain * generated[:samples])[None], config)
        print(
            f"gain {gain:>5}: plain log-mel L1 {mel_loss(generated_mel, target_mel, mask).item():.4f}, "
            f"normalized {normalized_mel_loss(generated_mel, target_mel, mask).item():.4f}"
        )


def run_mas():
    print("== monotonic alignment search (monotonic-alignment-search, Cython) ==")
    generator = torch.Generator().manual_seed(0)
    for batch_size, tokens, frames in [(16, 150, 800), (32, 300, 1500)]:
        scores = torch.randn(batch_size, tokens, frames, generator=generator)
        monotonic_alignment(scores, torch.ones(batch_size, tokens), torch.ones(batch_size, frames))
        started = time.perf_counter()
        for _ in range(5):
            monotonic_alignment(scores, torch.ones(batch_size, tokens), torch.ones(batch_size, frames))
        milliseconds = (time.perf_counter() - started) / 5 * 1000
        print(f"batch {batch_size} x {tokens} tokens x {frames} frames: {milliseconds:.1f} ms")
    # the GPU benchmark's batch (train_throughput.py defaults there): 32 clips of 2-8 s at 16 kHz, hop 256, about
    # 20 tokens a second, padded to the longest; the search runs on each clip's own lengths
    rng = np.random.default_rng(0)
    seconds = rng.uniform(2.0, 8.0, 32)
    frame_lengths = (seconds * 16000).astype(int) // 256
    token_lengths = np.maximum(2, np.minimum(frame_lengths, (seconds * 20).astype(int)))
    text_mask = torch.from_numpy(np.arange(token_lengths.max()) < token_lengths[:, None]).float()
    frame_mask = torch.from_numpy(np.arange(frame_lengths.max()) < frame_lengths[:, None]).float()
    scores = torch.randn(32, int(token_lengths.max()), int(frame_lengths.max()), generator=generator)
    monotonic_alignment(scores, text_mask, frame_mask)
    started = time.perf_counter()
    for _ in range(5):
        monotonic_alignment(scores, text_mask, frame_mask)
    cells = int((token_lengths * frame_lengths).sum())
    print(
        f"batch 32 of 2-8 s clips (padded {scores.shape[1]} tokens x {scores.shape[2]} frames, {cells / 1e6:.2f} M "
        f"cells searched): {(time.perf_counter() - started) / 5 * 1000:.1f} ms"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["overfit", "amplitude", "normalized", "mas", "all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200, help="overfit steps")
    parser.add_argument("--warmup_steps", type=int, default=150, help="amplitude: steps before scaling the decoder")
    parser.add_argument("--recovery_steps", type=int, default=80, help="amplitude: steps after scaling")
    parser.add_argument(
        "--amplitude_weight", type=float, default=10.0, help="amplitude: weight compared with 0 during the recovery"
    )
    parser.add_argument(
        "--warmup_amplitude_weight", type=float, default=10.0, help="amplitude: weight of the term during the warm-up"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.what in ("mas", "all"):
        run_mas()
    if args.what in ("normalized", "all"):
        run_normalized()
    if args.what in ("overfit", "all"):
        run_overfit(args.seed, args.steps)
    if args.what in ("amplitude", "all"):
        run_amplitude(
            args.seed, args.warmup_steps, args.recovery_steps, args.amplitude_weight, args.warmup_amplitude_weight
        )


if __name__ == "__main__":
    main()
