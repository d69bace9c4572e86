"""Which layout the period discriminators run faster in: 2-D convolutions over the `(T / p, p)` fold, or 1-D
convolutions over `p` times as many rows.

    python benchmarks/period_layout.py                 # VITS's discriminator, batch 4, 8192-sample segments, 1 thread

A period discriminator's convolutions have `(k, 1)` kernels: each of the `p` columns of the fold is convolved on its
own, which is the arithmetic of a 1-D convolution over a batch of `B * p` rows with the kernel's `k` taps. Both
layouts are run on the same weights (`recipe.model.discriminator.VitsDiscriminator`, VITS's sizes) and the same
segment, their outputs checked equal, then forward + backward of all period discriminators timed in alternated pairs
(2-D, 1-D) in fp32 and under bf16 autocast; the figure is the median over pairs of the 2-D time over the 1-D time
(below 1: the 2-D layout, the one the recipe uses, is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from recipe.model.discriminator import VitsDiscriminator


def fold(period_discriminator, waveform: torch.Tensor) -> torch.Tensor:
    """The waveform `(B, 1, T)` padded to a multiple of the period and folded to `(B, 1, T / p, p)`, as
    `PeriodDiscriminator.forward` does."""
    period, length = period_discriminator.period, waveform.shape[-1]
    if length % period:
        waveform = F.pad(waveform, (0, period - length % period), mode="reflect")
    return waveform.view(waveform.shape[0], waveform.shape[1], -1, period)


def convolutions(period_discriminator):
    return [*period_discriminator.convs, period_discriminator.final_conv]


def as_2d(period_discriminator, waveform: torch.Tensor, slope: float) -> torch.Tensor:
    hidden = fold(period_discriminator, waveform)
    layers = convolutions(period_discriminator)
    for index, conv in enumerate(layers):
        hidden = conv(hidden)
        if index < len(layers) - 1:
            hidden = F.leaky_relu(hidden, slope)
    return hidden


def as_1d(period_discriminator, waveform: torch.Tensor, slope: float) -> torch.Tensor:
    folded = fold(period_discriminator, waveform)
    batch, channels, rows, period = folded.shape
    hidden = folded.permute(0, 3, 1, 2).reshape(batch * period, channels, rows)
    layers = convolutions(period_discriminator)
    for index, conv in enumerate(layers):
        hidden = F.conv1d(hidden, conv.weight.squeeze(-1), conv.bias, stride=conv.stride[0], padding=conv.padding[0])
        if index < len(layers) - 1:
            hidden = F.leaky_relu(hidden, slope)
    return hidden.reshape(batch, period, hidden.shape[1], -1).permute(0, 2, 3, 1)


def timed(layout, discriminators, waveform: torch.Tensor, slope: float, bf16: bool) -> float:
    inputs = waveform.clone().requires_grad_(True)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        total = sum(layout(module, inputs, slope).float().sum() for module in discriminators)
    total.backward()
    seconds = time.perf_counter() - start
    for module in discriminators:
        module.zero_grad(set_to_none=True)
    return seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8192, help="Segment length (VITS: 32 frames x hop 256).")
    parser.add_argument("--pairs", type=int, default=5, help="Timed (2-D, 1-D) pairs per precision.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    discriminator = VitsDiscriminator()
    periods = list(discriminator.discriminators[1:])
    slope = discriminator.config.leaky_relu_slope
    waveform = torch.randn(args.batch_size, 1, args.samples)
    with torch.no_grad():
        for module in periods:
            torch.testing.assert_close(as_1d(module, waveform, slope), as_2d(module, waveform, slope))
    results = {}
    for precision in ("fp32", "bf16"):
        bf16 = precision == "bf16"
        timed(as_2d, periods, waveform, slope, bf16), timed(as_1d, periods, waveform, slope, bf16)  # warm-up
        pairs = [
            (timed(as_2d, periods, waveform, slope, bf16), timed(as_1d, periods, waveform, slope, bf16))
            for _ in range(args.pairs)
        ]
        ratios = [two_d / one_d for two_d, one_d in pairs]
        results[precision] = {"ratio_median": statistics.median(ratios), "pairs_seconds": pairs}
        print(
            f"{precision}: 2-D / 1-D time, median of {args.pairs} pairs: {statistics.median(ratios):.2f} "
            f"(2-D {statistics.median(p[0] for p in pairs) * 1000:.0f} ms, "
            f"1-D {statistics.median(p[1] for p in pairs) * 1000:.0f} ms per forward + backward)"
        )
    return results


if __name__ == "__main__":
    main()
