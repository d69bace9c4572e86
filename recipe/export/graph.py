"""The VITS inference graph as ONNX, traced through the model's own modules.

`VitsInferenceGraph` runs what `VitsModel.forward` runs at inference, on the model's submodules: the text encoder,
the duration predictor in its inference direction, the length regulation (repeat each token's prior for its
duration), the flow in reverse and the decoder. Only the length regulation is written here (it has no weights); every
module is called as the model holds it, so a voice whose `decoder` was replaced (a Piper voice's HiFi-GAN with
type-2 residual blocks) exports the same way.

Inputs and outputs follow Piper's graph (`piper.train.export_onnx`), which Piper and sherpa-onnx both run:

- `input` `(batch, tokens)` int64 token ids; `input_lengths` `(batch,)` int64;
- `scales` `(3,)` float32: noise scale, length scale (1 / speaking rate), duration-noise scale (`noise_w`);
- `sid` `(batch,)` int64, only for a multi-speaker model;
- `output` `(batch, 1, samples)` float32 waveform; with `with_lengths`, also `output_lengths` `(batch,)` int64, the
  valid samples of each item of a padded batch.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

# Piper's own exports use opset 15, and so do the Piper and sherpa-onnx runtimes found on older boards: a newer
# opset would shut those out without any gain for these ops.
ONNX_OPSET = 15
INPUT_NAMES = ("input", "input_lengths", "scales")
SPEAKER_INPUT = "sid"


class VitsInferenceGraph(nn.Module):
    """A `VitsModel`'s inference pass with tensor scales, for tracing.

    Args:
        model (`VitsModel`): the voice, in eval mode; its modules are used as they are.
        with_lengths (`bool`, *optional*, defaults to `False`): also return each item's number of valid samples.
        input_stage (`nn.Module`, *optional*): maps the runtime's `(input_ids, input_lengths)` to the model's before
            the text encoder (`recipe.export.composition.ComposeLetters` for Piper's text mode).
    """

    def __init__(self, model, with_lengths: bool = False, input_stage: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.with_lengths = with_lengths
        self.input_stage = input_stage
        self.hop_length = int(math.prod(model.config.upsample_rates))

    def forward(self, input_ids, input_lengths, scales, sid=None):
        model = self.model
        if self.input_stage is not None:
            input_ids, input_lengths = self.input_stage(input_ids, input_lengths)
        noise_scale, length_scale, duration_noise_scale = scales[0], scales[1], scales[2]
        batch_size, num_tokens = input_ids.shape
        token_mask = torch.arange(num_tokens, device=input_ids.device).unsqueeze(0) < input_lengths.unsqueeze(1)
        token_mask = token_mask.to(torch.float32)
        # A ready 4-D additive mask is used by the encoder as it is (transformers' mask helper would otherwise decide
        # from the values whether to build one, a branch that tracing would freeze).
        attention_mask = ((1.0 - token_mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        attention_mask = attention_mask.expand(batch_size, 1, num_tokens, num_tokens)
        padding_mask = token_mask.unsqueeze(-1)
        speaker_embeddings = model.embed_speaker(sid).unsqueeze(-1) if sid is not None else None

        encoded = model.text_encoder(
            input_ids=input_ids, padding_mask=padding_mask, attention_mask=attention_mask, return_dict=True
        )
        hidden_states = encoded.last_hidden_state.transpose(1, 2)
        padding_mask = padding_mask.transpose(1, 2)
        if model.config.use_stochastic_duration_prediction:
            log_duration = model.duration_predictor(
                hidden_states, padding_mask, speaker_embeddings, reverse=True, noise_scale=duration_noise_scale
            )
        else:
            log_duration = model.duration_predictor(hidden_states, padding_mask, speaker_embeddings)

        # Length regulation, as `VitsModel.forward` computes it (same operations, so the same rounding).
        duration = torch.ceil(torch.exp(log_duration) * padding_mask * length_scale)
        frame_lengths = torch.clamp_min(torch.sum(duration, [1, 2]), 1).long()
        frames = torch.arange(frame_lengths.max(), dtype=frame_lengths.dtype, device=frame_lengths.device)
        output_mask = (frames.unsqueeze(0) < frame_lengths.unsqueeze(1)).unsqueeze(1).to(padding_mask.dtype)
        attention = torch.unsqueeze(padding_mask, 2) * torch.unsqueeze(output_mask, -1)
        _, _, num_frames, _ = attention.shape
        cumulative = torch.cumsum(duration, -1).view(batch_size * num_tokens, 1)
        frame_indices = torch.arange(num_frames, dtype=duration.dtype, device=duration.device)
        valid = (frame_indices.unsqueeze(0) < cumulative).to(attention.dtype).view(batch_size, num_tokens, num_frames)
        path = valid - nn.functional.pad(valid, [0, 0, 1, 0, 0, 0])[:, :-1]
        path = path.unsqueeze(1).transpose(2, 3) * attention
        prior_means = torch.matmul(path.squeeze(1), encoded.prior_means).transpose(1, 2)
        prior_log_variances = torch.matmul(path.squeeze(1), encoded.prior_log_variances).transpose(1, 2)

        prior_latents = prior_means + torch.randn_like(prior_means) * torch.exp(prior_log_variances) * noise_scale
        latents = model.flow(prior_latents, output_mask, speaker_embeddings, reverse=True)
        waveform = model.decoder(latents * output_mask, speaker_embeddings)
        if self.with_lengths:
            return waveform, frame_lengths * self.hop_length
        return waveform


def fold_parametrizations(model: nn.Module) -> None:
    """Replace every parametrized weight (weight norm) of `model` by its value, in place.

    The graph then holds plain weights instead of recomputing `g * v / |v|` at every call; the values are the ones
    the parametrization computes, so the audio does not change.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def _example_inputs(model) -> tuple:
    """A padded batch of two, so that tracing records the masking a batch needs (every length stays dynamic)."""
    num_tokens = 24
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, model.config.vocab_size, (2, num_tokens), generator=generator)
    input_lengths = torch.tensor([num_tokens, num_tokens - 7])
    scales = torch.tensor([0.667, 1.0, 0.8])
    if model.config.num_speakers > 1:
        return input_ids, input_lengths, scales, torch.tensor([0, model.config.num_speakers - 1])
    return input_ids, input_lengths, scales


def export_graph(model, path: str, with_lengths: bool = False, input_stage: nn.Module | None = None) -> None:
    """Write `model`'s inference graph to `path` (ONNX, opset `ONNX_OPSET`, dynamic batch and lengths).

    Args:
        model (`VitsModel`): the voice; its weight norm is folded in place (see `fold_parametrizations`), so pass a
            model loaded for the export, not one still used for training.
        path (`str`): the `.onnx` file to write.
        with_lengths (`bool`, *optional*, defaults to `False`): add the `output_lengths` output (the generic `onnx`
            format; Piper reads a second output as alignments, so its graph has none).
        input_stage (`nn.Module`, *optional*): see `VitsInferenceGraph`.
    """
    model.eval()
    fold_parametrizations(model)
    graph = VitsInferenceGraph(model, with_lengths=with_lengths, input_stage=input_stage).eval()
    inputs = _example_inputs(model)
    input_names = list(INPUT_NAMES) + ([SPEAKER_INPUT] if len(inputs) == 4 else [])
    output_names = ["output"] + (["output_lengths"] if with_lengths else [])
    dynamic_axes = {
        "input": {0: "batch_size", 1: "phonemes"},
        "input_lengths": {0: "batch_size"},
        "output": {0: "batch_size", 2: "time"},
    }
    if len(inputs) == 4:
        dynamic_axes[SPEAKER_INPUT] = {0: "batch_size"}
    if with_lengths:
        dynamic_axes["output_lengths"] = {0: "batch_size"}
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every Python-level size check in transformers' VITS modules (shape asserts, the
        # relative-attention padding); they hold for any length, and the exporter's callers compare the graph's
        # audio with the model's, which is what would catch a branch frozen wrongly.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # `torch.flip` (flows, duration predictor) becomes a Slice with step -1, which the exporter leaves to the
        # runtime instead of folding, and says so once per pass.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        # TorchScript tracing (dynamo=False), not torch.export: the output length depends on the predicted
        # durations (a data-dependent shape), which tracing records as ops and torch.export refuses unless the
        # model's modules are rewritten.
        torch.onnx.export(
            graph,
            inputs,
            path,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )


def set_metadata(path: str, metadata: dict[str, str]) -> None:
    """Write `metadata` into the model's `metadata_props` (what sherpa-onnx reads to configure a VITS voice).

    Args:
        path (`str`): an `.onnx` file, rewritten in place.
        metadata (`dict[str, str]`): key -> value; values are written as strings, keys already present are replaced.
    """
    from recipe.export.dependencies import require

    onnx = require("onnx")
    graph = onnx.load(path)
    existing = {prop.key: prop for prop in graph.metadata_props}
    for key, value in metadata.items():
        prop = existing.get(key) or graph.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.save(graph, path)


def read_metadata(path: str) -> dict[str, str]:
    """The `metadata_props` of an `.onnx` file."""
    from recipe.export.dependencies import require

    onnx = require("onnx")
    return {prop.key: prop.value for prop in onnx.load(path, load_external_data=False).metadata_props}
