"""Voices: the one loader of every voice the recipe trains, compares, monitors or exports (`load_voice`), what kind
of tokenizer it has (`tokenizer_kind`), and what a model folder says about itself (`folder`: the import report;
`lineage`: the rounds of fine-tuning).

`from recipe.voices import load_voice` is written into the `config.json` of every type-2 Piper voice the recipe
saves: it stays importable from here.
"""

from recipe.voices.loading import load_tokenizer, load_voice, load_voice_config, model_from_config, tokenizer_kind

__all__ = ["load_tokenizer", "load_voice", "load_voice_config", "model_from_config", "tokenizer_kind"]
