"""Training throughput of `VitsForTraining` with its discriminator, and where each step's time goes.

    python benchmarks/train_throughput.py                      # CPU: tiny config, batch 4, 2 + 6 steps
    python benchmarks/train_throughput.py --device cuda        # GPU: MMS-size, batch 32, bf16, 2-8 s clips
    python benchmarks/train_throughput.py --device cuda --model_config mms --precision bf16 --batch_size 32 \\
        --steps 30 --num_workers 4 --output_json train_h100.json

Each step is the sequence of calls `recipe.training.trainer.VitsTrainer.training_step` makes, with the real
objectives: the generator's forward (`VitsForTraining`), one discriminator pass over the real and generated audio
(`recipe.model.losses.discriminate`) that `generator_objective` and `discriminator_objective` share, the
discriminator's backward into its own parameters and the generator's into the generator's, then gradient clipping
(1.0), both AdamW steps, both learning-rate schedules and `zero_grad(set_to_none=True)`. `--discriminator_passes 2`
times VITS's two passes instead (the generator's objective with the discriminator frozen, then the discriminator's
on the detached audio, scored anew: the same gradients, one discriminator forward more). The batches come from a
`DataLoader` with `VitsDataCollator` over synthetic cached features (random speech-like audio, clip lengths uniform
in `--min_seconds`..`--max_seconds`, about 20 tokens a second).

    python benchmarks/train_throughput.py --model_config mms --discriminator vits --batch_size 2 --steps 2 \
        --warmup_steps 1 --threads 1 --compare 2:fp32 1:fp32 1:bf16 --rounds 3

compares steps side by side: each variant (discriminator passes : precision) trains its own copy of the same model
on the same batches with the same noise, the variants alternate round by round (A B A B), and the table gives each
one's samples/s, seconds of audio per second, its speed against the first variant (the median over rounds of the
ratio of step times) and its peak memory (from a short run of its own).

Per step it reports, with the device synchronized at each boundary:
    data_wait           waiting for the DataLoader's next batch (collation included when `--num_workers 0`)
    alignment           the monotonic alignment search (`recipe.model.alignment.monotonic_alignment`, timed in place)
    generator           generator forward + losses + backward, less the alignment search
    discriminator       discriminator forward + loss + backward
    optimizer           clipping, both optimizer steps, schedules, zero_grad
    other               the rest of the step (moving the batch to the device, recording the loss components)
and samples/s, seconds of audio per second, peak memory (`torch.cuda.max_memory_allocated` on a GPU, peak RSS on
CPU). Targets: `data_wait + other` at most 10% of a step; on a GPU at batch 32, alignment at most 5%.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    REPO_ROOT,
    format_table,
    machine_description,
    peak_host_memory_mb,
    synchronize,
    write_json,
)

PHASES = ("data_wait", "alignment", "generator", "discriminator", "optimizer", "other")
OVERHEAD_PHASES = ("data_wait", "other")  # work outside the model's own compute
OVERHEAD_TARGET = 0.10
ALIGNMENT_TARGET = 0.05
TOKENS_PER_SECOND = 20  # MMS character vocabularies with blanks interleaved: about 2 x 10 characters a second
TINY_DISCRIMINATOR = os.path.join(REPO_ROOT, "demo", "tiny_model", "discriminator_config.json")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda[:N]; cuda when available.")
    parser.add_argument(
        "--model_config",
        default=None,
        help="'mms' (VitsConfig() defaults: the MMS-TTS size, random weights), 'tiny' (the test suite's config) or a "
        "config.json path. Default: mms on a GPU, tiny on CPU.",
    )
    parser.add_argument(
        "--discriminator",
        default=None,
        choices=["vits", "small", "none"],
        help="'vits' (VITS's 46.7 M-parameter discriminator), 'small' (demo/tiny_model/discriminator_config.json) "
        "or 'none'. Default: vits with the mms config, small otherwise.",
    )
    parser.add_argument("--batch_size", type=int, default=None, help="Default: 32 on a GPU, 4 on CPU.")
    parser.add_argument("--steps", type=int, default=None, help="Timed steps. Default: 30 on a GPU, 6 on CPU.")
    parser.add_argument("--warmup_steps", type=int, default=None, help="Untimed first steps. Default: 5 GPU, 2 CPU.")
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16"], help="Default: bf16 GPU, fp32 CPU.")
    parser.add_argument(
        "--discriminator_passes",
        type=int,
        default=1,
        choices=[1, 2],
        help="1: one discriminator forward serves both objectives (VitsTrainer's step); 2: VITS's two passes (the "
        "generator's objective with the discriminator frozen, then the discriminator's on the detached audio).",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        default=None,
        metavar="PASSES:PRECISION",
        help="Compare steps side by side, e.g. '2:fp32 1:bf16': each variant trains its own copy of the same model on "
        "the same batches, the variants alternate for --rounds rounds of --steps steps (A B A B), and each one's "
        "speed is reported as the median over rounds of the first variant's step time over its own; peak memory "
        "from a separate short run of each. Replaces --discriminator_passes and --precision.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="With --compare: rounds of alternation.")
    parser.add_argument("--min_seconds", type=float, default=2.0, help="Shortest synthetic clip.")
    parser.add_argument("--max_seconds", type=float, default=8.0, help="Longest synthetic clip.")
    parser.add_argument("--segment_size", type=int, default=32, help="Latent frames decoded per clip (as training).")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes.")
    parser.add_argument(
        "--group_by_length",
        action="store_true",
        help="Batch clips of similar length (transformers' LengthGroupedSampler, as Trainer's --group_by_length).",
    )
    parser.add_argument(
        "--fused_adamw",
        action="store_true",
        help="torch.optim.AdamW(fused=True) (Trainer's --optim adamw_torch_fused).",
    )
    parser.add_argument("--tf32", action="store_true", help="Allow TF32 matmuls and convolutions (Ampere+ GPUs).")
    parser.add_argument(
        "--compile",
        default="none",
        choices=["none", "segment"],
        help="torch.compile: 'segment' compiles the HiFi-GAN decoder and the discriminator in place "
        "(`nn.Module.compile`), the parts that see the fixed-size segment; the first warm-up step includes the "
        "compilation and is reported apart. The encoders and flow see a new text / spectrogram length every batch.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads. Default on CPU: 1 (measured on 2 shared cores: 2 threads made steps 2-20x "
        "slower whenever other processes ran, see benchmarks/README.md); torch's own default on a GPU.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, not {args.device!r}")
    gpu = device.type == "cuda"
    args.device = device
    args.model_config = args.model_config or ("mms" if gpu else "tiny")
    args.discriminator = args.discriminator or ("vits" if args.model_config == "mms" else "small")
    args.batch_size = args.batch_size or (32 if gpu else 4)
    args.steps = args.steps or (30 if gpu else 6)
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (5 if gpu else 2)
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    args.threads = args.threads or (None if gpu else 1)
    if args.tf32 and not gpu:
        parser.error("--tf32 only changes CUDA matmuls; it does nothing on CPU")
    if args.precision == "bf16" and gpu and not torch.cuda.is_bf16_supported():
        parser.error("--precision bf16: this GPU has no bf16")
    if args.batch_size < 1 or args.steps < 1 or args.warmup_steps < 0 or args.num_workers < 0:
        parser.error("--batch_size and --steps must be positive, --warmup_steps and --num_workers non-negative")
    if not 0 < args.min_seconds <= args.max_seconds:
        parser.error(f"Need 0 < --min_seconds <= --max_seconds, got {args.min_seconds} and {args.max_seconds}")
    if args.model_config not in ("mms", "tiny") and not os.path.isfile(args.model_config):
        parser.error(f"--model_config {args.model_config!r}: not 'mms', 'tiny' or an existing config.json")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be positive, not {args.threads}")
    given = {word.split("=")[0] for word in args.argv if word.startswith("--")}
    if args.compare is None and "--rounds" in given:
        parser.error("--rounds counts the rounds of --compare; without --compare it does nothing")
    if args.compare is not None and given & {"--discriminator_passes", "--precision"}:
        parser.error("--compare gives each variant's passes and precision; drop --discriminator_passes / --precision")
    if args.compare is not None:
        try:
            args.compare = [Variant.parse(text) for text in args.compare]
        except ValueError as error:
            parser.error(f"--compare: {error}")
        if len(args.compare) < 2 or args.rounds < 1:
            parser.error("--compare needs at least two variants, and --rounds must be positive")
        if any(variant.precision == "bf16" and gpu and not torch.cuda.is_bf16_supported() for variant in args.compare):
            parser.error("--compare: this GPU has no bf16")
    return args


@dataclasses.dataclass(frozen=True)
class Variant:
    """A training step to compare: discriminator passes (1 or 2) and autocast precision (fp32 or bf16)."""

    passes: int
    precision: str

    @classmethod
    def parse(cls, text: str) -> Variant:
        passes, _, precision = text.partition(":")
        if passes not in ("1", "2") or precision not in ("fp32", "bf16"):
            raise ValueError(f"{text!r} is not PASSES:PRECISION with PASSES 1 or 2 and PRECISION fp32 or bf16")
        return cls(int(passes), precision)

    def __str__(self) -> str:
        return f"{self.passes}:{self.precision}"


# -- model, data, optimizers ------------------------------------------------------------------------------------------


def build_config(spec: str):
    from transformers import VitsConfig

    if spec == "mms":
        return VitsConfig()  # the MMS-TTS architecture (e.g. facebook/mms-tts-*): 36.3 M parameters
    if spec == "tiny":
        from recipe.model.tiny import make_tiny_config

        return make_tiny_config()
    return VitsConfig.from_json_file(spec)


def build_discriminator(spec: str):
    import json

    from recipe.model.discriminator import DiscriminatorConfig, load_discriminator

    if spec == "small":
        with open(TINY_DISCRIMINATOR) as handle:
            return load_discriminator("random", DiscriminatorConfig(**json.load(handle)))
    return load_discriminator("random" if spec == "vits" else "none")


def synthetic_features(config, num_clips: int, min_seconds: float, max_seconds: float, seed: int) -> list[dict]:
    """Rows with the cached-feature columns of `recipe.data`: noisy harmonic audio, its log-mel, random token ids."""
    from recipe.audio import SpectrogramConfig, log_mel_spectrogram

    spectrogram = SpectrogramConfig.from_model_config(config)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_clips):
        seconds = rng.uniform(min_seconds, max_seconds)
        frames = int(seconds * config.sampling_rate) // spectrogram.hop_length
        t = np.arange(frames * spectrogram.hop_length) / config.sampling_rate
        pitch = rng.uniform(90, 250)
        voiced = sum(np.sin(2 * np.pi * k * pitch * t) / k for k in range(1, 6))
        waveform = (0.2 * voiced + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
        log_mel = log_mel_spectrogram(torch.from_numpy(waveform), spectrogram)[:, :frames].T.contiguous().numpy()
        num_tokens = max(2, min(frames, int(seconds * TOKENS_PER_SECOND)))
        rows.append(
            {
                "input_ids": rng.integers(1, config.vocab_size, num_tokens).tolist(),
                "waveform": waveform,
                "log_mel": log_mel,
                "waveform_length": len(waveform),
                "mel_length": frames,
                "tokens_length": num_tokens,
                "speaker_id": 0,
            }
        )
    return rows


def build_loader(rows: list[dict], args, spectrogram, pad_token_id: int):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from recipe.data.collator import VitsDataCollator

    generator = torch.Generator().manual_seed(args.seed)
    if args.group_by_length:
        sampler = LengthGroupedSampler(
            args.batch_size, lengths=[row["waveform_length"] for row in rows], generator=generator
        )
    else:
        sampler = torch.utils.data.RandomSampler(rows, generator=generator)
    return torch.utils.data.DataLoader(
        rows,
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=VitsDataCollator(spectrogram, pad_token_id=pad_token_id),
        num_workers=args.num_workers,
        pin_memory=args.device.type == "cuda",
        persistent_workers=args.num_workers > 0,
        drop_last=True,
    )


def endless(loader):
    while True:
        yield from loader


class PhaseTimer:
    """Wall time per phase of one step, with the device synchronized at each boundary."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def phase(self, name: str):
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start

    def reset(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)


@contextlib.contextmanager
def timed_alignment(timer: PhaseTimer):
    """Time every `monotonic_alignment` call `VitsForTraining.forward` makes, without editing `recipe.model.alignment`.

    `recipe.model.training_forward` imported the function by name, so the name is swapped there for the duration of
    the run.
    """
    import recipe.model.training_forward as modeling

    search = modeling.monotonic_alignment

    def timed(*args, **kwargs):
        with timer.phase("alignment"):
            return search(*args, **kwargs)

    modeling.monotonic_alignment = timed
    try:
        yield
    finally:
        modeling.monotonic_alignment = search


def adamw(parameters, fused: bool):
    # VITS's AdamW settings, as VitsTrainingArguments' defaults (lr 2e-5, betas 0.8 / 0.99)
    return torch.optim.AdamW(parameters, lr=2e-5, betas=(0.8, 0.99), eps=1e-8, fused=fused or None)


# -- the step --------------------------------------------------------------------------------------------------------


def train_step(
    model, discriminator, optimizers, schedulers, batches, timer: PhaseTimer, args, metric_sums: dict, variant=None
):
    """One training step, in `VitsTrainer.training_step`'s order; the phases accumulate in `timer`.

    `variant` (`Variant`, defaults to `--discriminator_passes` and `--precision`): one discriminator pass shared by
    both objectives (the trainer's step: the discriminator's backward into its parameters, the generator's into the
    generator's) or VITS's two (the generator's objective with the discriminator frozen, then the discriminator's on
    the detached audio, scored anew); the autocast precision.
    """
    from recipe.model.losses import LossWeights, discriminate, discriminator_objective, frozen, generator_objective

    variant = variant or Variant(args.discriminator_passes, args.precision)
    device = args.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.precision == "bf16")
    synchronize(device)
    step_start = time.perf_counter()
    with timer.phase("data_wait"):
        batch = next(batches)
    batch = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
    model.train()

    synchronize(device)
    generator_start, alignment_before = time.perf_counter(), timer.seconds["alignment"]
    with autocast:
        outputs = model(**batch)
    if discriminator is not None and variant.passes == 1:
        # the discriminator's work is its one forward and its backward: timed apart, as in the two-pass step
        with timer.phase("discriminator"), autocast:
            discriminated = discriminate(discriminator, outputs)
        with autocast:
            loss, components = generator_objective(outputs, LossWeights(), discriminated)
        with timer.phase("discriminator"):
            discriminator_loss, discriminator_components = discriminator_objective(discriminated)
            discriminator_loss.backward(inputs=list(discriminator.parameters()), retain_graph=True)
        loss.backward(inputs=[parameter for parameter in model.parameters() if parameter.requires_grad])
    else:
        context = frozen(discriminator) if discriminator is not None else contextlib.nullcontext()
        with autocast, context:
            discriminated = discriminate(discriminator, outputs) if discriminator is not None else None
            loss, components = generator_objective(outputs, LossWeights(), discriminated)
        loss.backward()
    synchronize(device)
    alignment = timer.seconds["alignment"] - alignment_before
    # less the one-pass step's discriminator phases (none yet in the two-pass step's)
    timer.seconds["generator"] += time.perf_counter() - generator_start - alignment - timer.seconds["discriminator"]

    if discriminator is not None:
        if variant.passes == 2:
            with timer.phase("discriminator"):
                with autocast:
                    passes = discriminate(discriminator, outputs, detach_generated=True)
                discriminator_loss, discriminator_components = discriminator_objective(passes)
                discriminator_loss.backward()
        components.update(discriminator_components)

    with timer.phase("optimizer"):
        if discriminator is not None:
            optimizers[1].step()
            schedulers[1].step()
            optimizers[1].zero_grad(set_to_none=True)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizers[0].step()
        schedulers[0].step()
        optimizers[0].zero_grad(set_to_none=True)

    # LossWindow.record (recipe.training.loss_window): on-device sums of the components, no host sync
    for name, value in components.items():
        value = value.detach().float()
        metric_sums[name] = metric_sums[name] + value if name in metric_sums else value
    synchronize(device)
    total = time.perf_counter() - step_start
    timer.seconds["other"] += total - sum(timer.seconds[name] for name in PHASES if name != "other")
    return total, batch


@dataclasses.dataclass
class Setup:
    """What one variant trains: its own model, discriminator, optimizers, schedules and batches."""

    model: torch.nn.Module
    discriminator: torch.nn.Module | None
    optimizers: list
    schedulers: list
    batches: object
    timer: PhaseTimer
    metric_sums: dict = dataclasses.field(default_factory=dict)
    steps_done: int = 0


def build_setup(args, config, rows: list[dict]) -> Setup:
    """A freshly seeded model and discriminator with their optimizers and schedules, and a loader over `rows`: two
    setups built with the same arguments start from the same weights and see the same batches."""
    from transformers import VitsModel, set_seed
    from transformers.optimization import get_scheduler

    from recipe.model.preparation import prepare_for_training
    from recipe.model.training_forward import VitsForTraining

    set_seed(args.seed)
    vits = prepare_for_training(VitsModel(config))
    model = VitsForTraining(vits, segment_size=args.segment_size).to(args.device)
    discriminator = build_discriminator(args.discriminator)
    if discriminator is not None:
        discriminator.to(args.device)
    if args.compile == "segment":
        # in place: the state_dict keys, the optimizers' parameters and the saved model stay as they are
        model.vits.decoder.compile(dynamic=False)
        if discriminator is not None:
            discriminator.compile(dynamic=False)
    total_steps = args.warmup_steps + args.steps * (args.rounds if args.compare else 1)
    optimizers = [adamw(model.parameters(), args.fused_adamw)]
    if discriminator is not None:
        optimizers.append(adamw(discriminator.parameters(), args.fused_adamw))
    schedulers = [
        get_scheduler("cosine", optimizer, num_warmup_steps=max(1, total_steps // 20), num_training_steps=total_steps)
        for optimizer in optimizers
    ]
    loader = build_loader(rows, args, model.spectrogram_config, pad_token_id=config.pad_token_id or 0)
    return Setup(model, discriminator, optimizers, schedulers, endless(loader), PhaseTimer(args.device))


def build_rows(args, config) -> list[dict]:
    # LengthGroupedSampler sorts "megabatches" of min(num_clips // (4 * batch), 50) batches: with 32 batches' worth
    # of clips it groups 8 batches at a time, as it would on a real dataset (with fewer it cannot group at all)
    num_clips = 32 * args.batch_size
    start = time.perf_counter()
    rows = synthetic_features(config, num_clips, args.min_seconds, args.max_seconds, args.seed)
    print(f"Built {num_clips} synthetic clips in {time.perf_counter() - start:.1f} s", flush=True)
    return rows


def timed_steps(setup: Setup, args, config, count: int, variant=None, label: str = "") -> list[dict]:
    """`count` training steps of `setup`; per step its seconds, audio seconds, padding share and phases."""
    steps = []
    for _ in range(count):
        # the training forward's noise and segment choice, seeded per step: every variant's step N draws the same
        torch.manual_seed(args.seed + setup.steps_done)
        setup.steps_done += 1
        setup.timer.reset()
        seconds, batch = train_step(
            setup.model,
            setup.discriminator,
            setup.optimizers,
            setup.schedulers,
            setup.batches,
            setup.timer,
            args,
            setup.metric_sums,
            variant,
        )
        lengths = batch["waveform_lengths"]
        # share of the padded batch that is padding: compute the text / posterior encoders and flow spend on it
        padding = 1 - float(lengths.sum()) / (lengths.numel() * batch["waveform"].shape[-1])
        audio_seconds = float(lengths.sum()) / config.sampling_rate
        steps.append(
            {"seconds": seconds, "audio_seconds": audio_seconds, "padding_share": padding, **setup.timer.seconds}
        )
        print(f"  {label}step {len(steps)}/{count}: {seconds * 1000:.0f} ms", flush=True)
    return steps


def mean_losses(setup: Setup, steps: int) -> dict:
    losses = {name: float(value) / steps for name, value in setup.metric_sums.items()}
    if not all(math.isfinite(value) for value in losses.values()):
        raise RuntimeError(f"Non-finite loss components during the benchmark: {losses}")
    return losses


def configure_device(args) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def run(args) -> dict:
    config = build_config(args.model_config)
    configure_device(args)
    setup = build_setup(args, config, build_rows(args, config))
    if args.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(args.device)
    with timed_alignment(setup.timer):
        warmup_seconds = [
            step["seconds"] for step in timed_steps(setup, args, config, args.warmup_steps, label="warm-up ")
        ]
        steps = timed_steps(setup, args, config, args.steps)
    losses = mean_losses(setup, args.warmup_steps + args.steps)
    return summarize(args, config, setup.model, setup.discriminator, steps, losses, warmup_seconds)


def peak_memory_of(args, variant: Variant) -> float:
    """Peak memory (MiB: the GPU's max_memory_allocated, else host peak RSS) of a separate short run of `variant`
    with the same settings: in one process the variants' peaks could not be told apart."""
    skip = {
        "--compare",
        "--rounds",
        "--output_json",
        "--steps",
        "--warmup_steps",
        "--discriminator_passes",
        "--precision",
    }
    kept, dropping = [], False
    for word in args.argv:
        if word.startswith("--"):
            dropping = word.split("=")[0] in skip
            if dropping:
                continue
        elif dropping:
            continue
        kept.append(word)
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "memory.json")
        command = [sys.executable, __file__, *kept, "--steps", "1", "--warmup_steps", "1"]
        command += ["--discriminator_passes", str(variant.passes), "--precision", variant.precision]
        subprocess.run([*command, "--output_json", output], check=True, capture_output=True, text=True)
        with open(output) as handle:
            figures = json.load(handle)
    return figures["peak_device_memory_mb"] or figures["peak_host_memory_mb"]


def run_comparison(args) -> dict:
    """The variants of `--compare` alternated round by round (A B A B ...) on copies of one model and one batch
    sequence; speed as the median over rounds of the ratio of the first variant's step time to each one's."""
    # first, while this process is small: a child's peak RSS starts from its parent's (Linux keeps it across exec)
    print("Measuring each variant's peak memory in a short run of its own ...", flush=True)
    memory = {str(variant): peak_memory_of(args, variant) for variant in args.compare}
    config = build_config(args.model_config)
    configure_device(args)
    rows = build_rows(args, config)
    setups = [build_setup(args, config, rows) for _ in args.compare]
    rounds = {str(variant): [] for variant in args.compare}
    for variant, setup in zip(args.compare, setups):
        timed_steps(setup, args, config, args.warmup_steps, variant, label=f"{variant} warm-up ")
    for index in range(args.rounds):
        for variant, setup in zip(args.compare, setups):
            label = f"round {index + 1}/{args.rounds} {variant} "
            rounds[str(variant)].append(timed_steps(setup, args, config, args.steps, variant, label=label))
    baseline = str(args.compare[0])
    results = {
        "machine": machine_description(args.device),
        "command": "python " + " ".join([os.path.relpath(__file__, REPO_ROOT), *args.argv]),
        "settings": {
            name: [str(v) for v in value]
            if name == "compare"
            else str(value)
            if isinstance(value, torch.device)
            else value
            for name, value in vars(args).items()
            if name not in ("output_json", "argv")
        },
        "variants": {},
    }
    for variant, setup in zip(args.compare, setups):
        name = str(variant)
        per_round = [sum(step["seconds"] for step in steps) / len(steps) for steps in rounds[name]]
        ratios = [
            sum(step["seconds"] for step in base) / sum(step["seconds"] for step in own)
            for base, own in zip(rounds[baseline], rounds[name])
        ]
        all_steps = [step for steps in rounds[name] for step in steps]
        total = sum(step["seconds"] for step in all_steps)
        results["variants"][name] = {
            "discriminator_passes": variant.passes,
            "precision": variant.precision,
            "step_seconds_per_round": per_round,
            "speedup_per_round": ratios,
            "speedup_median": statistics.median(ratios),
            "samples_per_second": args.batch_size * len(all_steps) / total,
            "audio_seconds_per_second": sum(step["audio_seconds"] for step in all_steps) / total,
            "phase_seconds": {phase: sum(step[phase] for step in all_steps) / len(all_steps) for phase in PHASES},
            "mean_loss_components": mean_losses(setup, args.warmup_steps + args.steps * args.rounds),
        }
    for name, peak in memory.items():
        results["variants"][name]["peak_memory_mb"] = peak
    rows_out = [{"variant": name, **figures} for name, figures in results["variants"].items()]
    print()
    print(
        format_table(
            rows_out,
            [
                ("variant", "passes:precision", ""),
                ("samples_per_second", "samples/s", ".2f"),
                ("audio_seconds_per_second", "audio s/s", ".2f"),
                ("speedup_median", f"x {baseline} (median)", ".2f"),
                ("peak_memory_mb", "peak MiB", ".0f"),
            ],
        )
    )
    print(
        f"\n{args.model_config} model, discriminator {args.discriminator}, batch {args.batch_size}, {args.device}, "
        f"{args.rounds} rounds of {args.steps} steps after {args.warmup_steps} warm-up steps each"
    )
    return results


def summarize(args, config, model, discriminator, steps: list[dict], losses: dict, warmup_seconds: list) -> dict:
    total = sum(step["seconds"] for step in steps)
    phases = {name: sum(step[name] for step in steps) / len(steps) for name in PHASES}
    step_seconds = total / len(steps)
    shares = {name: phases[name] / step_seconds for name in PHASES}
    overhead = sum(shares[name] for name in OVERHEAD_PHASES)
    results = {
        "machine": machine_description(args.device),
        "command": "python " + " ".join([os.path.relpath(__file__, REPO_ROOT), *args.argv]),
        "settings": {
            name: str(value) if isinstance(value, torch.device) else value
            for name, value in vars(args).items()
            if name not in ("output_json", "argv")
        },
        "model_parameters": sum(p.numel() for p in model.parameters()),
        "discriminator_parameters": sum(p.numel() for p in discriminator.parameters()) if discriminator else 0,
        "samples_per_second": args.batch_size * len(steps) / total,
        "audio_seconds_per_second": sum(step["audio_seconds"] for step in steps) / total,
        "step_seconds_mean": step_seconds,
        "step_seconds_median": statistics.median(step["seconds"] for step in steps),
        "phase_seconds": phases,
        "phase_shares": shares,
        "overhead_share": overhead,
        "overhead_target": OVERHEAD_TARGET,
        "alignment_share": shares["alignment"],
        "alignment_target": ALIGNMENT_TARGET,
        "padding_share": statistics.mean(step["padding_share"] for step in steps),
        "peak_host_memory_mb": peak_host_memory_mb(),
        "peak_device_memory_mb": (
            torch.cuda.max_memory_allocated(args.device) / 2**20 if args.device.type == "cuda" else None
        ),
        "warmup_step_seconds": warmup_seconds,  # the first one includes torch.compile's compilation
        "mean_loss_components": losses,
        "steps": steps,
    }
    print()
    print(
        format_table(
            [{"phase": name, "ms": phases[name] * 1000, "share": 100 * shares[name]} for name in PHASES],
            [("phase", "phase", ""), ("ms", "ms/step", ".1f"), ("share", "% of step", ".1f")],
        )
    )
    memory = results["peak_device_memory_mb"] or results["peak_host_memory_mb"]
    memory_kind = "device max_memory_allocated" if results["peak_device_memory_mb"] else "host peak RSS"
    print(
        f"\n{args.model_config} model ({results['model_parameters'] / 1e6:.1f} M parameters), discriminator "
        f"{args.discriminator} ({results['discriminator_parameters'] / 1e6:.2f} M), batch {args.batch_size}, "
        f"{args.precision}, {args.device}"
    )
    print(
        f"samples/s {results['samples_per_second']:.2f}   audio s/s {results['audio_seconds_per_second']:.1f}   "
        f"step {step_seconds * 1000:.0f} ms   peak memory {memory:.0f} MiB ({memory_kind})   "
        f"padding {100 * results['padding_share']:.0f}% of the batch"
    )
    if warmup_seconds:
        print(f"warm-up steps (not timed above): {', '.join(f'{t * 1000:.0f}' for t in warmup_seconds)} ms")
    verdict = "holds" if overhead <= OVERHEAD_TARGET else "FAILS"
    print(
        f"Outside the model's compute (data_wait + other): {100 * overhead:.1f}% of a step, target <= 10%: {verdict}"
    )
    print(f"Alignment search: {100 * shares['alignment']:.1f}% of a step (target <= 5% at batch 32 on a GPU)")
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    results = run_comparison(args) if args.compare else run(args)
    write_json(results, args.output_json)
    return results


if __name__ == "__main__":
    main()
