"""`python -m recipe.export MODEL_DIR --format piper|sherpa-onnx|onnx --output_dir OUT [--quantize int8]`.

Exit status: 0 once the export is written and checked; 2 and one line `python -m recipe.export: error: MESSAGE` for
bad input, an `ExportError` (not a model folder, a voice the runtime cannot express, a check that failed) or a
missing runtime package (`recipe.errors.run_command`; `RECIPE_DEBUG=1` also shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys

from recipe.errors import RaisesArgumentsError, help_epilog, run_command
from recipe.export.exporter import FORMATS, export_voice
from recipe.export.quantize import QUANTIZATIONS

PROG = "python -m recipe.export"


class _ArgumentParser(RaisesArgumentsError, argparse.ArgumentParser):
    """The export's arguments; a mistake in them is one line (`RaisesArgumentsError`)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _ArgumentParser(
        prog=PROG,
        description="Export a VITS voice folder for Piper, sherpa-onnx or plain ONNX, checked against the model.",
        epilog=help_epilog(PROG),
    )
    parser.add_argument("model_dir", help="the model folder (a recipe output, a checkpoint, an imported voice)")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="the runtime to export for")
    parser.add_argument("--output_dir", required=True, help="the folder to create (must be absent or empty)")
    parser.add_argument("--quantize", choices=list(QUANTIZATIONS), help="int8 weights (dynamic quantization)")
    parser.add_argument(
        "--check_text",
        help="the text synthesized by the runtime and by the model to check the export (default: every character "
        "of a character model's vocabulary)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Export and check; returns 0. Bad input raises an `InputError` (`ExportError`, `ArgumentsError`,
    `MissingExtraError`), which `run_command` reports."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = export_voice(args.model_dir, args.format, args.output_dir, args.quantize, args.check_text)
    check = result.check
    print(
        f"{result.output_dir}: {result.graph_bytes / 2**20:.1f} MiB graph; check text through the runtime: "
        f"{check['samples']} samples (PyTorch {check['reference_samples']}), max abs difference "
        f"{check['max_abs_difference']:.2e}"
    )
    print(f"How to run it: {result.output_dir}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(PROG, main))
