"""Fit a trained model's speaking rate afterwards, as `--fit_speaking_rate true` does at the end of a run, on every
clip of a folder (prepared as `recipe.compare` prepares references), and save the model with it.

    python benchmarks/fit_rate_afterwards.py --model outputs/rv22/flite_slt/joe_second \\
        --data outputs/rv22/flite_slt/second --output outputs/rv22/c_fitted_rate_posthoc/joe_second

Writes the model folder (without its checkpoints) with the fitted `speaking_rate` in its config, and
`<output>_rate_fit.json` with the fit's figures (`recipe.training.rate_fit.fit_speaking_rate`'s return value).
"""

from __future__ import annotations

import argparse
import json
import shutil
from types import SimpleNamespace

import datasets

from recipe.evaluation.compare import CompareArguments
from recipe.evaluation.references import load_references
from recipe.training.rate_fit import fit_speaking_rate
from recipe.voices import load_tokenizer, load_voice


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the trained model folder")
    parser.add_argument("--data", required=True, help="the recordings to fit the rate to (a dataset folder)")
    parser.add_argument("--output", required=True, help="where the model with the fitted rate is written")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    vits, tokenizer = load_voice(args.model).eval(), load_tokenizer(args.model)
    compare_args = CompareArguments(
        finetuned=args.model, references=args.data, output_dir=args.output + "_fitdata", max_samples=None,
        cache_dir=args.output + "_fitcache",
    )  # fmt: skip
    sentences, _ = load_references(compare_args, tokenizer, vits.config)
    split = datasets.Dataset.from_dict(
        {
            "text": [sentence.text for sentence in sentences],
            "source_text": [sentence.scoring_text for sentence in sentences],
            "waveform": [sentence.reference for sentence in sentences],
            "speaker_id": [0] * len(sentences),
        }
    )
    # the two attributes of a trainer that fit_speaking_rate reads
    trainer = SimpleNamespace(
        args=SimpleNamespace(fit_speaking_rate=True, seed=args.seed), model=SimpleNamespace(vits=vits)
    )
    figures = fit_speaking_rate(trainer, split, tokenizer)
    shutil.copytree(args.model, args.output, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint-*"))
    vits.config.save_pretrained(args.output)
    with open(args.output + "_rate_fit.json", "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=1)
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
