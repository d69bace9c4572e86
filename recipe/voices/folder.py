"""What a model folder says about itself beyond its model and tokenizer: the import report of an imported voice.

`python -m recipe.piper import` writes `import_report.json` beside the model it converts (where the voice came from,
its decoder type, the parity check) and `python -m recipe.piper warmup` carries it over with its own results. Its
`untrained_prefixes` name the parameters the voice file did not hold, the ones `run_finetune.py
--warmup_untrained_parts` trains. The rounds of fine-tuning a folder went through are in `recipe.voices.lineage`.
"""

from __future__ import annotations

import json
import os

IMPORT_REPORT_NAME = "import_report.json"


def untrained_prefixes(model_folder: str | None) -> tuple[str, ...]:
    """The parameter-name prefixes an imported voice lacks, from its folder's import report.

    Raises:
        `ValueError` when the folder has no import report, or its report lists no untrained part.
    """
    path = os.path.join(model_folder or "", IMPORT_REPORT_NAME)
    if model_folder is None or not os.path.isfile(path):
        raise ValueError(
            f"--warmup_untrained_parts needs a model folder made by `python -m recipe.piper import` ({path} not found)"
        )
    with open(path, encoding="utf-8") as handle:
        prefixes = tuple(json.load(handle).get("untrained_prefixes", ()))
    if not prefixes:
        raise ValueError(f"{path}: the imported voice has no untrained parts to warm up")
    return prefixes
