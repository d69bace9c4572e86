"""The exported folder's README: the command that runs the voice, what the export measured, and where the voice
comes from (its lineage)."""

from __future__ import annotations

import json
import os

from recipe.export.check import MAX_ABS_DIFFERENCE
from recipe.voices.lineage import LINEAGE_FILE


def _lineage_table(lineage: list[dict]) -> str:
    keys = list(dict.fromkeys(key for entry in lineage for key in entry))
    rows = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    rows += ["| " + " | ".join(str(entry.get(key, "")) for key in keys) + " |" for entry in lineage]
    return "\n".join(rows)


def _check_section(check: dict, command: str) -> list[str]:
    lines = [
        "## Checked",
        "",
        f"Measured by the export itself (`{command}`): the text below through this folder's runtime, against "
        "`VitsModel` in PyTorch, noise off (noise and duration-noise scales 0, length scale 1)"
        + (f", speaker {check['speaker_id']}" if check.get("speaker_id") is not None else "")
        + ".",
        "",
        f"- text: `{check['text']}`"
        + (f" (given to the runtime as `{check['runtime_text']}`)" if check["runtime_text"] != check["text"] else ""),
        f"- samples: {check['samples']} (PyTorch: {check['reference_samples']})",
        f"- max abs difference: {check['max_abs_difference']:.2e}",
    ]
    if "mcd" in check:
        lines += [
            f"- mel-cepstral distance against PyTorch (`recipe.evaluation.mel_cepstral_distortion`): "
            f"{check['mcd']:.3f}; RMS level {check['rms_dbfs']:.2f} "
            f"dBFS against {check['reference_rms_dbfs']:.2f} dBFS",
            "",
            f"The int8 graph is not held to the float tolerance ({MAX_ABS_DIFFERENCE:g}); its length may differ "
            "where a rounded duration moved.",
        ]
    else:
        lines += ["", f"Passed: same length, at most {MAX_ABS_DIFFERENCE:g} apart."]
    return lines


def python_heredoc(script: str) -> list[str]:
    """README lines that run `script` with `python - <<'EOF'` in a bash block."""
    return ["```bash", "python - <<'EOF'", script.rstrip("\n"), "EOF", "```"]


def write_readme(
    folder: str,
    *,
    export_format: str,
    model_dir: str,
    command: str,
    usage: str,
    check: dict,
    graph_file: str,
    graph_bytes: int,
    quantize: str | None,
    lineage: list[dict],
) -> None:
    """Write `README.md` (and `lineage.json` when the model has one) into `folder`.

    Args:
        folder (`str`): the exported folder being written.
        export_format (`str`): `piper`, `sherpa-onnx` or `onnx`.
        model_dir (`str`): the model folder exported.
        command (`str`): the export command, quoted beside the figures it measured.
        usage (`str`): the layout's "Run it" section.
        check (`dict`): the parity check (`recipe.export.check.compare` plus `text`, `runtime_text`, and for int8
            `mcd`, `rms_dbfs`, `reference_rms_dbfs`).
        graph_file (`str`) / graph_bytes (`int`): the graph's name and size.
        quantize (`str`, *optional*): `"int8"` when the weights are quantized.
        lineage (`list[dict]`): the model's training rounds (`recipe.continuation.read_lineage`).
    """
    name = os.path.basename(os.path.abspath(model_dir))
    weights = "int8 weights (dynamic quantization)" if quantize else "float32"
    lines = [
        f"# {name} for {export_format}",
        "",
        f"Exported from `{os.path.abspath(model_dir)}` by `{command}`. `{graph_file}`: "
        f"{graph_bytes / 2**20:.1f} MiB, {weights}.",
        "",
        "## Run it",
        "",
        usage,
        "",
        *_check_section(check, command),
        "",
        "## Lineage",
        "",
    ]
    if lineage:
        lines += [
            f"Training rounds of this voice, oldest first (also in `{LINEAGE_FILE}`):",
            "",
            _lineage_table(lineage),
        ]
        with open(os.path.join(folder, LINEAGE_FILE), "w", encoding="utf-8") as handle:
            json.dump(lineage, handle, ensure_ascii=False, indent=2)
    else:
        lines.append(
            f"The model folder has no `{LINEAGE_FILE}`: it was not written by this recipe's fine-tuning (a base "
            "model, or one trained elsewhere)."
        )
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
