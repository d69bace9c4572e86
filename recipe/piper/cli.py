"""Piper voices in the recipe.

    python -m recipe.piper import VOICE.onnx --output_dir DIR [--config VOICE.onnx.json] [--no_check]
    python -m recipe.piper import VOICE.ckpt --config VOICE.onnx.json --output_dir DIR   # a Piper training checkpoint
    python -m recipe.piper warmup DIR --dataset_name DATA --output_dir WARM [--steps 400]

`DIR` is then a model folder like any other: `run_finetune.py --model_name_or_path DIR`, `recipe.compare`, resume.
Needs the `piper` extra (`pip install -e ".[piper]"`).
"""

from __future__ import annotations

import argparse
import json
import logging


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
    warmup = commands.add_parser(
        "warmup",
        help="train an imported voice's posterior encoder and posterior duration flows on its own synthesis of the "
        "dataset's texts (recipe/warmup.py)",
    )
    warmup.add_argument("model", help="a folder written by `import`")
    warmup.add_argument(
        "--dataset_name", required=True, help="whose texts are synthesized (as run_finetune.py takes it)"
    )
    warmup.add_argument("--dataset_format", default="auto", help="auto | hub | common_voice | ljspeech")
    warmup.add_argument("--output_dir", required=True, help="the warmed-up model folder to write (new or empty)")
    warmup.add_argument("--steps", type=int, default=400, help="optimizer steps (default 400)")
    warmup.add_argument("--learning_rate", type=float, default=6e-4, help="AdamW learning rate (default 6e-4)")
    warmup.add_argument("--batch_size", type=int, default=8, help="utterances per step (default 8)")
    warmup.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s - %(name)s - %(message)s")
    if args.command == "warmup":
        return run_warmup(args, parser)

    from recipe.piper.importer import import_voice

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


def run_warmup(args, parser) -> dict:
    import os

    from recipe.folders import folder_written_whole
    from recipe.model.vocabulary import source_texts
    from recipe.piper.importer import IMPORT_REPORT_NAME
    from recipe.piper.warmup import warm_up_from_own_synthesis
    from recipe.training.arguments import DataArguments
    from recipe.voices import load_tokenizer, load_voice

    report_path = os.path.join(args.model, IMPORT_REPORT_NAME)
    if not os.path.isfile(report_path):
        parser.exit(
            2, f"error: {args.model} is not a folder written by `python -m recipe.piper import` (no {report_path})\n"
        )
    if os.path.isdir(args.output_dir) and os.listdir(args.output_dir):
        parser.exit(2, f"error: --output_dir {args.output_dir} exists and is not empty\n")
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    texts = source_texts(DataArguments(dataset_name=args.dataset_name, dataset_format=args.dataset_format))
    vits, tokenizer = load_voice(args.model), load_tokenizer(args.model)
    try:
        report["warmup"] = warm_up_from_own_synthesis(
            vits, tokenizer, texts, steps=args.steps, learning_rate=args.learning_rate, batch_size=args.batch_size,
            seed=args.seed,
        )  # fmt: skip
    except ValueError as error:
        parser.exit(2, f"error: {error} Nothing was written.\n")
    report["warmup"]["dataset_name"] = args.dataset_name
    with folder_written_whole(args.output_dir) as folder:  # complete or not at all, as the import's
        vits.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        with open(os.path.join(folder, IMPORT_REPORT_NAME), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report["warmup"], indent=2))
    return report
