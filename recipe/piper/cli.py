"""Piper voices in the recipe.

    python -m recipe.piper import VOICE.onnx --output_dir DIR [--config VOICE.onnx.json] [--no_check]
    python -m recipe.piper import VOICE.ckpt --config VOICE.onnx.json --output_dir DIR   # a Piper training checkpoint
    python -m recipe.piper warmup DIR --dataset_name DATA --output_dir WARM [--steps N]

`DIR` is then a model folder like any other: `run_finetune.py --model_name_or_path DIR`, `recipe.compare`, resume.
Needs the `piper` extra (`pip install -e ".[piper]"`). Exit status: 0; 2 and one line
`python -m recipe.piper: error: MESSAGE` for bad input: a voice the import refuses, a folder the warm-up refuses, a
missing extra (`recipe.errors.run_command`; `RECIPE_DEBUG=1` also shows its traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from recipe.errors import ArgumentsError, InputError, RaisesArgumentsError, help_epilog, run_command

PROG = "python -m recipe.piper"
logger = logging.getLogger(__name__)


class VoiceImportError(InputError, ValueError):
    """The import refused the voice: not a Piper voice or checkpoint, an output folder in the way, a conversion that
    does not reproduce the ONNX. The message names the file and the reason. Raised by `recipe.piper.importer` at each
    of its refusals (a missing file is a `MissingInputError`, a missing extra a `MissingExtraError`); defined here so
    that the command's `--help` loads no model code."""


class _ArgumentParser(RaisesArgumentsError, argparse.ArgumentParser):
    """The command's arguments (its subcommands' too); a mistake in them is one line (`RaisesArgumentsError`)."""


def main(argv: list[str] | None = None) -> None:
    """`python -m recipe.piper import|warmup ...`: runs the subcommand and exits with its status (module docstring)."""
    sys.exit(run_command(PROG, run, argv))


def run(argv: list[str]) -> int:
    """Parses `argv` and runs `import` or `warmup`; returns 0. Bad input raises an `InputError`."""
    from recipe.piper.warmup import WARMUP_BATCH_SIZE, WARMUP_LEARNING_RATE, WARMUP_STEPS

    parser = _ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], epilog=help_epilog(PROG))
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser(
        "import", help="convert a Piper ONNX voice into a model folder", epilog=help_epilog(PROG)
    )
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
        "dataset's texts (recipe/piper/warmup.py)",
        epilog=help_epilog(PROG),
    )
    warmup.add_argument("model", help="a folder written by `import`")
    warmup.add_argument(
        "--dataset_name", required=True, help="whose texts are synthesized (as run_finetune.py takes it)"
    )
    warmup.add_argument(
        "--dataset_format", default="auto", help="the layout of --dataset_name, as run_finetune.py --help lists them"
    )
    warmup.add_argument("--output_dir", required=True, help="the warmed-up model folder to write (new or empty)")
    warmup.add_argument("--steps", type=int, default=WARMUP_STEPS, help="optimizer steps (default %(default)s)")
    warmup.add_argument(
        "--learning_rate", type=float, default=WARMUP_LEARNING_RATE, help="AdamW learning rate (default %(default)s)"
    )
    warmup.add_argument(
        "--batch_size", type=int, default=WARMUP_BATCH_SIZE, help="utterances per step (default %(default)s)"
    )
    warmup.add_argument("--seed", type=int, default=0)
    warmup.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="what the warm-up's forward computes in; auto: as run_finetune.py's --precision auto on a CPU "
        "(default %(default)s)",
    )
    args = parser.parse_args(argv)
    _configure_output()
    if args.command == "warmup":
        run_warmup(args)
    else:
        run_import(args)
    return 0


def _configure_output() -> None:
    """Log lines at INFO with their time (the warm-up's ETA is read against it); progress bars on a terminal only."""
    from recipe.training.callbacks import configure_progress_bars

    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(name)s - %(message)s")
    configure_progress_bars(on_terminal=sys.stderr.isatty())


def run_import(args) -> None:
    from recipe.piper.importer import import_voice

    # the importer's refusals are input errors (`VoiceImportError`, ...); anything else is a bug and keeps its traceback
    report = import_voice(args.voice, args.output_dir, config_path=args.config, check=not args.no_check)
    print(json.dumps(report, indent=2))
    if report["untrained_parts"]:
        print(
            f"Imported into {args.output_dir}. Untrained (random) parts: {', '.join(report['untrained_parts'])}: warm "
            f"them up before fine-tuning: {PROG} warmup {args.output_dir} --dataset_name DATA --output_dir "
            f"{args.output_dir.rstrip('/')}-warm (docs/piper.md, 'Warm-up'; run_finetune.py --warmup_untrained_parts "
            "is the slower alternative, on the recordings)."
        )
    else:
        print(f"Imported into {args.output_dir}, with every part trained.")


def run_warmup(args) -> None:
    import os

    from recipe.folders import folder_written_whole
    from recipe.model.vocabulary import source_texts
    from recipe.piper.warmup import warm_up_from_own_synthesis
    from recipe.training.arguments import DataArguments
    from recipe.training.precision import resolved_precision
    from recipe.voices import load_tokenizer, load_voice
    from recipe.voices.folder import IMPORT_REPORT_NAME

    report_path = os.path.join(args.model, IMPORT_REPORT_NAME)
    if not os.path.isfile(report_path):
        raise ArgumentsError(
            f"{args.model} is not a folder written by `python -m recipe.piper import` (no {report_path})"
        )
    if os.path.isdir(args.output_dir) and os.listdir(args.output_dir):
        raise ArgumentsError(f"--output_dir {args.output_dir} exists and is not empty")
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    logger.info(f"Reading the texts of {args.dataset_name}")
    texts = source_texts(DataArguments(dataset_name=args.dataset_name, dataset_format=args.dataset_format))
    logger.info(f"Loading the voice from {args.model}")
    vits, tokenizer = load_voice(args.model), load_tokenizer(args.model)
    try:
        report["warmup"] = warm_up_from_own_synthesis(
            vits, tokenizer, texts, steps=args.steps, learning_rate=args.learning_rate, batch_size=args.batch_size,
            seed=args.seed, precision=resolved_precision(args.precision, use_cpu=True),
        )  # fmt: skip
    except InputError as error:
        # the warm-up's refusals (no text gave a token, a loss that did not fall) come before anything is written
        raise type(error)(f"{error} Nothing was written.") from error
    report["warmup"]["dataset_name"] = args.dataset_name
    logger.info(f"Writing the warmed-up voice to {args.output_dir}")
    with folder_written_whole(args.output_dir) as folder:  # complete or not at all, as the import's
        vits.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        with open(os.path.join(folder, IMPORT_REPORT_NAME), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report["warmup"], indent=2))
