"""Import a Piper voice (`VOICE.onnx` + `VOICE.onnx.json`, or a training checkpoint `.ckpt` + its JSON) as a model
folder the recipe trains like any other.

The ONNX graph holds the inference weights of VITS's generator under VITS's names (`enc_p`, `flow`, `dp`, `dec`),
except where the exporter folded or renamed them: the flow's WaveNet convolutions are anonymous (`onnx::Conv_N`) and
the text embedding is called after the graph input it feeds (`sid`); both are named here by the node that consumes
them. The duration predictor's first ElementwiseAffine is stored as `exp(-logs)`, as inference uses it.

What inference does not use is not in the ONNX, so it starts from random weights and must be warmed up
(`python -m recipe.piper warmup`, from the voice's own synthesis; `run_finetune.py --warmup_untrained_parts` is the
slower alternative on the recordings: docs/piper.md, "Warm-up"): the posterior encoder, the duration predictor's
posterior flows and its first ConvFlow, and the discriminator. `import_report.json` in the folder lists them. A Piper
training checkpoint (PyTorch Lightning, `model_g.*` / `model_d.*`) holds all of it, the discriminator included.

Every refusal is an input error (`recipe.errors`) raised where the importer refuses: `VoiceImportError` (not a Piper
voice, a JSON that does not fit it, an output folder in the way, a conversion that does not reproduce the ONNX),
`MissingInputError` (the voice or its JSON not found), `MissingExtraError` (no `piper` extra). Any other exception is
a bug and keeps its traceback.

The model's architecture comes from the weights' shapes and the graph's attributes (upsampling strides, dilations);
what the ONNX cannot say (the STFT size the posterior encoder reads, its depth) takes VITS / Piper's values.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import VitsConfig, VitsModel

from recipe.errors import MissingInputError
from recipe.folders import folder_written_whole
from recipe.model.discriminator import fold_weight_norm
from recipe.piper.cli import VoiceImportError
from recipe.piper.decoder import Resblock2VitsConfig
from recipe.piper.tokenizer import PiperPhonemeTokenizer, check_piper_config, require_piper
from recipe.piper.weight_names import load_plain_weights, vits_to_transformers
from recipe.voices.folder import IMPORT_REPORT_NAME
from recipe.voices.loading import model_from_config
from recipe.voices.speaker_map import speaker_map, write_speaker_map

logger = logging.getLogger(__name__)

# Piper trains every quality with a 1024-point STFT (513 bins) and a 16-layer posterior WaveNet, as VITS did
PIPER_SPECTROGRAM_BINS = 513
PIPER_POSTERIOR_WAVENET_LAYERS = 16
# noise off: what the conversion check compares
_PARITY_TOLERANCE = 1e-3


@dataclass
class VoiceWeights:
    """What the importer reads from a Piper voice (ONNX or training checkpoint): VITS-named generator weights and the
    per-layer conv attributes the weights' shapes do not tell (upsampling strides, dilations)."""

    weights: dict[str, np.ndarray]
    strides: dict[str, int] = field(default_factory=dict)
    dilations: dict[str, int] = field(default_factory=dict)


def _layer_name(node_name: str) -> str:
    """`/flow/flows.0/enc/in_layers.0/Conv` -> `flow.flows.0.enc.in_layers.0`."""
    return ".".join(node_name.strip("/").split("/")[:-1])


def read_onnx_voice(path: str) -> VoiceWeights:
    """The generator weights of a Piper ONNX voice under VITS's names. Raises `VoiceImportError` when it is not one."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(path).graph
    except Exception as error:  # onnx raises DecodeError, ValidationError, OSError...: all mean "not an ONNX model"
        raise VoiceImportError(f"{path}: not an ONNX model ({type(error).__name__}: {error})") from error
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    voice = VoiceWeights(weights={})
    for node in graph.node:
        layer = _layer_name(node.name)
        attributes = {attribute.name: list(attribute.ints) for attribute in node.attribute}
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            voice.strides[layer] = attributes.get("strides", [1])[0]
            voice.dilations[layer] = attributes.get("dilations", [1])[0]
            for role, name in zip(("weight", "bias"), node.input[1:3]):
                if name in initializers:
                    voice.weights[f"{layer}.{role}"] = numpy_helper.to_array(initializers[name])
        elif node.op_type == "Gather" and layer in ("enc_p.emb", "emb_g") and node.input[0] in initializers:
            # the token table, and a multi-speaker voice's speaker table (read by `sid`)
            voice.weights[f"{layer}.weight"] = numpy_helper.to_array(initializers[node.input[0]])
    for name, tensor in initializers.items():
        if re.match(r"^[a-z_]+(\.\w+)+$", name) and name not in voice.weights:
            voice.weights[name] = numpy_helper.to_array(tensor)  # named parameters (norms, affine flows, biases)
    # inference applies the first duration flow as (x - m) * exp(-logs): the exporter folded exp(-logs)
    folded = initializers.get("/dp/flows.0/Exp_output_0")
    if folded is not None:
        voice.weights["dp.flows.0.logs"] = -np.log(numpy_helper.to_array(folded))
    else:  # an exporter that did not fold it: exp(-logs), with -logs an initializer
        negated = next(
            (
                node.input[0]
                for node in graph.node
                if node.op_type == "Exp" and _layer_name(node.name) == "dp.flows.0" and node.input[0] in initializers
            ),
            None,
        )
        if negated is not None:
            voice.weights["dp.flows.0.logs"] = -numpy_helper.to_array(initializers[negated])
    # leftovers of tracing that are not weights (dp.flows.2 is a Flip)
    voice.weights = {name: value for name, value in voice.weights.items() if not name.startswith("dp.flows.2.")}
    for required in ("enc_p.emb.weight", "dec.conv_pre.weight", "flow.flows.0.pre.weight", "dp.pre.weight"):
        if required not in voice.weights:
            raise VoiceImportError(f"{path}: not a Piper VITS voice (no {required})")
    return voice


def _count(weights, pattern: str) -> int:
    return len({match.group(1) for name in weights if (match := re.match(pattern, name))})


def config_from_voice(voice: VoiceWeights, piper_config: dict) -> VitsConfig:
    """The `VitsConfig` (or `Resblock2VitsConfig`) that holds the voice's weights."""
    weights = voice.weights
    vocab_size, hidden_size = weights["enc_p.emb.weight"].shape
    relative = weights["enc_p.encoder.attn_layers.0.emb_rel_k"].shape  # (1, 2 * window + 1, hidden / heads)
    num_upsamples = _count(weights, r"^dec\.ups\.(\d+)\.weight$")
    upsample_rates = [voice.strides[f"dec.ups.{i}"] for i in range(num_upsamples)]
    type2 = "dec.resblocks.0.convs.0.weight" in weights
    num_kernels = _count(weights, r"^dec\.resblocks\.(\d+)\.") // num_upsamples
    first_conv = "convs" if type2 else "convs1"
    kernel_sizes = [int(weights[f"dec.resblocks.{k}.{first_conv}.0.weight"].shape[-1]) for k in range(num_kernels)]
    dilations = [
        [
            voice.dilations[f"dec.resblocks.{k}.{first_conv}.{j}"]
            for j in range(_count(weights, rf"^dec\.resblocks\.{k}\.{first_conv}\.(\d+)\.weight$"))
        ]
        for k in range(num_kernels)
    ]
    convflow_projection = weights["dp.flows.3.proj.weight"].shape[0]  # half_channels * (3 * bins - 1)
    inference = piper_config.get("inference", {})
    values = dict(
        vocab_size=int(vocab_size),
        hidden_size=int(hidden_size),
        num_hidden_layers=_count(weights, r"^enc_p\.encoder\.attn_layers\.(\d+)\."),
        num_attention_heads=int(hidden_size // relative[-1]),
        window_size=int((relative[1] - 1) // 2),
        ffn_dim=int(weights["enc_p.encoder.ffn_layers.0.conv_1.weight"].shape[0]),
        ffn_kernel_size=int(weights["enc_p.encoder.ffn_layers.0.conv_1.weight"].shape[-1]),
        flow_size=int(weights["enc_p.proj.weight"].shape[0] // 2),
        # the posterior encoder's input, when the voice has it (a training checkpoint); Piper's otherwise
        spectrogram_bins=int(weights["enc_q.pre.weight"].shape[1])
        if "enc_q.pre.weight" in weights
        else PIPER_SPECTROGRAM_BINS,
        layerdrop=0.0,  # VITS never trained with layer drop
        use_stochastic_duration_prediction=True,
        # a multi-speaker voice: its speaker table (VITS's emb_g), which every conditioning layer reads
        num_speakers=int(weights["emb_g.weight"].shape[0]) if "emb_g.weight" in weights else 1,
        speaker_embedding_size=int(weights["emb_g.weight"].shape[1]) if "emb_g.weight" in weights else 0,
        upsample_initial_channel=int(weights["dec.conv_pre.weight"].shape[0]),
        upsample_rates=upsample_rates,
        upsample_kernel_sizes=[int(weights[f"dec.ups.{i}.weight"].shape[-1]) for i in range(num_upsamples)],
        resblock_kernel_sizes=kernel_sizes,
        resblock_dilation_sizes=dilations,
        leaky_relu_slope=0.1,
        depth_separable_channels=2,
        depth_separable_num_layers=_count(weights, r"^dp\.convs\.convs_sep\.(\d+)\."),
        duration_predictor_flow_bins=int((convflow_projection + 1) // 3),
        duration_predictor_kernel_size=int(weights["dp.convs.convs_sep.0.weight"].shape[-1]),
        duration_predictor_num_flows=(max(int(i) for i in re.findall(r"dp\.flows\.(\d+)\.pre", " ".join(weights))) + 1)
        // 2,
        prior_encoder_num_flows=_count(weights, r"^flow\.flows\.(\d+)\."),
        prior_encoder_num_wavenet_layers=_count(weights, r"^flow\.flows\.0\.enc\.in_layers\.(\d+)\."),
        posterior_encoder_num_wavenet_layers=_count(weights, r"^enc_q\.enc\.in_layers\.(\d+)\.")
        or PIPER_POSTERIOR_WAVENET_LAYERS,
        wavenet_kernel_size=int(weights["flow.flows.0.enc.in_layers.0.weight"].shape[-1]),
        wavenet_dilation_rate=1,
        speaking_rate=1.0 / float(inference.get("length_scale", 1.0)),
        noise_scale=float(inference.get("noise_scale", 0.667)),
        noise_scale_duration=float(inference.get("noise_w", 0.8)),
        sampling_rate=int(piper_config["audio"]["sample_rate"]),
        pad_token_id=None,  # Piper's id 0 ("_") is a trained token, not padding
    )
    return (Resblock2VitsConfig if type2 else VitsConfig)(**values)


def read_piper_config(voice_path: str, config_path: str | None) -> tuple[dict, str]:
    config_path = config_path or f"{voice_path}.json"
    if not os.path.isfile(config_path):
        raise MissingInputError(
            f"{config_path}: no Piper config beside the voice (give --config: the voice's .onnx.json, or the "
            "config.json of its training folder)"
        )
    try:
        with open(config_path, encoding="utf-8") as handle:
            piper_config = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VoiceImportError(f"{config_path}: not a JSON file ({error})") from error
    if not isinstance(piper_config, dict):
        raise VoiceImportError(f"{config_path}: not a Piper voice config (a JSON object is expected)")
    try:
        check_piper_config(piper_config, config_path)
    except ValueError as error:  # its refusals name the file and the field
        raise VoiceImportError(str(error)) from error
    return piper_config, config_path


def check_voice_matches_config(voice: VoiceWeights, piper_config: dict, onnx_path: str, config_path: str) -> None:
    num_symbols = voice.weights["enc_p.emb.weight"].shape[0]
    if int(piper_config.get("num_symbols", num_symbols)) != num_symbols:
        raise VoiceImportError(
            f"{config_path} says num_symbols {piper_config['num_symbols']}, {onnx_path} has {num_symbols}: "
            "the JSON belongs to another voice"
        )
    largest_id = max(max(ids) for ids in piper_config["phoneme_id_map"].values())
    if largest_id >= num_symbols:
        raise VoiceImportError(f"{config_path}: phoneme ids up to {largest_id}, {onnx_path} has {num_symbols} symbols")
    sample_rate = piper_config["audio"].get("sample_rate")
    if not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 48000:
        raise VoiceImportError(f"{config_path}: audio.sample_rate {sample_rate!r} is not a sample rate")
    num_speakers = int(piper_config.get("num_speakers", 1))
    table = voice.weights.get("emb_g.weight")
    rows = 1 if table is None else int(table.shape[0])
    if num_speakers != rows:
        raise VoiceImportError(
            f"{config_path} says num_speakers {num_speakers}, {onnx_path} has "
            f"{'no speaker table' if table is None else f'a table of {rows} speakers'}: the JSON belongs to another "
            "voice"
        )
    id_map = piper_config.get("speaker_id_map") or {}
    if num_speakers > 1 and id_map and sorted(id_map.values()) != list(range(num_speakers)):
        raise VoiceImportError(
            f"{config_path}: speaker_id_map gives ids {sorted(id_map.values())[:10]}, not 0..{num_speakers - 1}"
        )


def onnx_waveform(
    onnx_path: str, phoneme_ids: list[int], scales=(0.0, 1.0, 0.0), speaker_id: int | None = None
) -> np.ndarray:
    """The voice's own waveform for `phoneme_ids` through onnxruntime (scales: noise, length, noise_w; the speaker
    of a multi-speaker voice)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    feeds = {
        "input": np.array([phoneme_ids], dtype=np.int64),
        "input_lengths": np.array([len(phoneme_ids)], dtype=np.int64),
        "scales": np.array(scales, dtype=np.float32),
    }
    if speaker_id is not None:
        feeds["sid"] = np.array([speaker_id], dtype=np.int64)
    return session.run(None, feeds)[0].reshape(-1)


def model_waveform(model: VitsModel, phoneme_ids: list[int], speaker_id: int | None = None) -> np.ndarray:
    """The converted model's waveform with noise off."""
    noise_scale, noise_scale_duration = model.noise_scale, model.noise_scale_duration
    model.noise_scale = model.noise_scale_duration = 0.0
    try:
        with torch.no_grad():
            input_ids = torch.tensor([phoneme_ids])
            return (
                model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), speaker_id=speaker_id)
                .waveform[0]
                .numpy()
            )
    finally:
        model.noise_scale, model.noise_scale_duration = noise_scale, noise_scale_duration


def read_checkpoint_voice(path: str) -> tuple[VoiceWeights, dict[str, torch.Tensor]]:
    """The generator and discriminator weights of a Piper training checkpoint (PyTorch Lightning, `model_g.*` /
    `model_d.*`), with the strides and dilations from its hyper-parameters."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle / zip errors of any kind all mean "not a checkpoint this can read"
        raise VoiceImportError(
            f"{path}: not a PyTorch checkpoint that loads safely ({type(error).__name__}: {error})"
        ) from error
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    hyper = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(key.startswith("model_g.") for key in state):
        raise VoiceImportError(f"{path}: not a Piper training checkpoint (no state_dict with model_g.* weights)")
    if not isinstance(hyper, dict) or "upsample_rates" not in hyper or "resblock_dilation_sizes" not in hyper:
        raise VoiceImportError(f"{path}: no hyper_parameters with upsample_rates and resblock_dilation_sizes")
    generator = fold_weight_norm(
        {key[len("model_g.") :]: value for key, value in state.items() if key.startswith("model_g.")}
    )
    discriminator = {key[len("model_d.") :]: value for key, value in state.items() if key.startswith("model_d.")}
    voice = VoiceWeights(weights={name: value.float().numpy() for name, value in generator.items()})
    rates = [int(rate) for rate in _literal(hyper["upsample_rates"])]
    voice.strides = {f"dec.ups.{i}": rate for i, rate in enumerate(rates)}
    dilations = _literal(hyper["resblock_dilation_sizes"])
    num_kernels = len(dilations)
    first_conv = "convs" if str(hyper.get("resblock", "2")) == "2" else "convs1"
    for block in range(num_kernels * len(rates)):
        for j, dilation in enumerate(dilations[block % num_kernels]):
            voice.dilations[f"dec.resblocks.{block}.{first_conv}.{j}"] = int(dilation)
    for required in ("enc_p.emb.weight", "dec.conv_pre.weight", "enc_q.pre.weight", "dp.pre.weight"):
        if required not in voice.weights:
            raise VoiceImportError(f"{path}: not a Piper VITS training checkpoint (no model_g.{required})")
    return voice, discriminator


def _literal(value):
    """Piper's hyper-parameters may hold tuples written as strings ("(8, 8, 4)")."""
    import ast

    return ast.literal_eval(value) if isinstance(value, str) else value


def import_voice(voice_path: str, output_dir: str, config_path: str | None = None, check: bool = True) -> dict:
    """Convert a Piper voice into a model folder (model, `piper_voice.json` tokenizer, `import_report.json`, and the
    discriminator when the voice is a training checkpoint).

    Everything is checked before `output_dir` is written; the folder appears complete or not at all.

    Args:
        voice_path (`str`): the voice's `.onnx`, or a Piper training checkpoint (`.ckpt`).
        output_dir (`str`): the model folder to write; must not exist or be empty.
        config_path (`str`, *optional*): the voice's Piper JSON (phoneme ids, sample rate); defaults to
            `voice_path + ".json"`.
        check (`bool`, *optional*, defaults to `True`): for an ONNX voice, compare the converted model with the ONNX
            through onnxruntime (noise off) and refuse a difference above 1e-3.

    Returns:
        `dict`: the import report.

    Raises:
        `VoiceImportError`, `MissingInputError`, `MissingExtraError` (input errors, see the module docstring).
    """
    from recipe.model.discriminator import DiscriminatorConfig, VitsDiscriminator, save_discriminator

    require_piper()
    if not os.path.isfile(voice_path):
        raise MissingInputError(f"{voice_path}: no such file")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise VoiceImportError(f"--output_dir {output_dir} exists and is not empty: name a new or empty folder")
    piper_config, config_path = read_piper_config(voice_path, config_path)
    is_checkpoint = voice_path.endswith(".ckpt")
    if is_checkpoint:
        voice, discriminator_state = read_checkpoint_voice(voice_path)
    else:
        voice, discriminator_state = read_onnx_voice(voice_path), {}
    check_voice_matches_config(voice, piper_config, voice_path, config_path)
    tokenizer = PiperPhonemeTokenizer(piper_config)

    config = config_from_voice(voice, piper_config)
    model = model_from_config(config).eval()
    weights = {name: torch.from_numpy(np.array(value)) for name, value in voice.weights.items()}
    try:
        untrained = load_plain_weights(model, vits_to_transformers(weights))
    except (KeyError, ValueError) as error:  # a weight with no place or the wrong shape in the model read from them
        raise VoiceImportError(
            f"{voice_path}: its weights do not fit the architecture read from them ({error}): a layout the importer "
            "does not support"
        ) from error
    discriminator = None
    if discriminator_state:
        discriminator = VitsDiscriminator(DiscriminatorConfig())
        plain = fold_weight_norm(discriminator_state)
        renamed = {re.sub(r"\.conv_post\.", ".final_conv.", key): value for key, value in plain.items()}
        try:
            discriminator.load_plain_state_dict(renamed, source=voice_path)
        except ValueError as error:  # its message names the checkpoint and the weights that do not fit
            raise VoiceImportError(str(error)) from error

    report = {
        "source": os.path.abspath(voice_path),
        "piper_config": os.path.abspath(config_path),
        "decoder_resblock_type": "2" if isinstance(config, Resblock2VitsConfig) else "1",
        "sampling_rate": config.sampling_rate,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "untrained_parameters": sum(
            model.get_parameter(name).numel() for name in untrained if _is_parameter(model, name)
        ),
        "untrained_parts": sorted({_part(name) for name in untrained}),
        # what `run_finetune.py --warmup_untrained_parts` trains
        "untrained_prefixes": sorted({_part(name) + "." for name in untrained}),
        "discriminator": discriminator is not None,
    }
    if check and not is_checkpoint:
        report["parity"] = check_parity(model, tokenizer, voice_path)

    with folder_written_whole(output_dir) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if discriminator is not None:
            save_discriminator(discriminator, folder)  # `--discriminator auto` picks it up
        with open(os.path.join(folder, IMPORT_REPORT_NAME), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        if config.num_speakers > 1:
            write_speaker_map(folder, piper_speaker_map(piper_config, config.num_speakers))
    return report


def piper_speaker_map(piper_config: dict, num_speakers: int) -> dict:
    """The speaker map (`recipe.voices.speaker_map`) of a multi-speaker Piper voice: its `speaker_id_map`'s names, or
    the ids themselves when it has none."""
    names = {index: str(index) for index in range(num_speakers)}
    names.update({int(index): name for name, index in (piper_config.get("speaker_id_map") or {}).items()})
    return speaker_map([names[index] for index in range(num_speakers)], None, dataset=None)


PARITY_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Fine-tuning must leave a voice intelligible.",
    "How much wood would a woodchuck chuck?",
)


def check_parity(model: VitsModel, tokenizer: PiperPhonemeTokenizer, onnx_path: str) -> dict:
    """Max abs difference between the converted model and the ONNX on a few sentences, noise off; raises above 1e-3."""
    worst = 0.0
    speakers = _parity_speakers(model.config.num_speakers)
    for sentence, speaker in zip(PARITY_SENTENCES, speakers * len(PARITY_SENTENCES)):
        for phonemes in tokenizer.phonemize_sentences(sentence):
            ids = tokenizer.sentence_ids(phonemes)
            expected = onnx_waveform(onnx_path, ids, speaker_id=speaker)
            converted = model_waveform(model, ids, speaker_id=speaker)
            if expected.shape != converted.shape:
                raise VoiceImportError(
                    f"{onnx_path}: the converted model gives {converted.shape[0]} samples for {sentence!r}, the ONNX "
                    f"{expected.shape[0]}: the conversion does not match this voice"
                )
            worst = max(worst, float(np.abs(expected - converted).max()))
    if worst > _PARITY_TOLERANCE:
        raise VoiceImportError(
            f"{onnx_path}: the converted model differs from the ONNX by up to {worst:.2e} (noise off), more than "
            f"{_PARITY_TOLERANCE}: the conversion does not match this voice"
        )
    checked = sorted({speaker for speaker in speakers if speaker is not None})
    return {"sentences": len(PARITY_SENTENCES), "speakers": checked, "max_abs_difference": worst}


def _parity_speakers(num_speakers: int) -> list[int | None]:
    """The speakers the parity sentences are read by, in turn: the first, the last and one between."""
    if num_speakers <= 1:
        return [None]
    return sorted({0, num_speakers // 2, num_speakers - 1})


def _part(name: str) -> str:
    """The submodule an untrained weight belongs to (`posterior_encoder`, `duration_predictor.post_flows.0`...)."""
    parts = name.split(".")
    if parts[0] != "duration_predictor":
        return parts[0]
    return ".".join(parts[:3]) if parts[1] in ("flows", "post_flows") else ".".join(parts[:2])


def _is_parameter(model, name: str) -> bool:
    try:
        model.get_parameter(name)
    except AttributeError:
        return False
    return True
