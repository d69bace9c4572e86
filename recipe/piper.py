"""Piper voices in the recipe.

    python -m recipe.piper import VOICE.onnx --output_dir DIR [--config VOICE.onnx.json] [--no_check]
    python -m recipe.piper import VOICE.ckpt --config VOICE.onnx.json --output_dir DIR   # a Piper training checkpoint

`DIR` is then a model folder like any other: `run_finetune.py --model_name_or_path DIR`, `recipe.compare`, resume.
Needs the `piper` extra (`pip install -e ".[piper]"`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m recipe.piper", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser("import", help="convert a Piper ONNX voice into a model folder")
    importer.add_argument("voice", help="the voice's .onnx file, or a Piper training checkpoint (.ckpt)")
    importer.add_argument("--output_dir", required=True, help="the model folder to write (new or empty)")
    importer.add_argument("--config", default=None, help="the voice's Piper JSON (default: VOICE.onnx.json)")
    importer.add_argument(
        "--no_check",
        action="store_true",
        help="skip the comparison of the converted model with the ONNX through onnxruntime (noise off, 1e-3)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s - %(name)s - %(message)s")

    from .piper_import import import_voice

    try:
        report = import_voice(args.voice, args.output_dir, config_path=args.config, check=not args.no_check)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(report, indent=2))
    if report["untrained_parts"]:
        print(
            f"Imported into {args.output_dir}. Untrained (random) parts: {', '.join(report['untrained_parts'])}: warm "
            "them up before fine-tuning (run_finetune.py --warmup_untrained_parts; README, 'Piper voices')."
        )
    else:
        print(f"Imported into {args.output_dir}, with every part trained.")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
