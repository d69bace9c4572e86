"""Voices: the one loader of every voice the recipe trains, compares, monitors or exports (`load_voice`), and what
a model folder says about itself (`lineage`).

`from recipe.voices import load_voice` is written into the `config.json` of every type-2 Piper voice the recipe
saves: it stays importable from here.
"""

from recipe.voices.loading import (
    is_phoneme_vocabulary,
    load_tokenizer,
    load_voice,
    load_voice_config,
    model_from_config,
)

__all__ = ["is_phoneme_vocabulary", "load_tokenizer", "load_voice", "load_voice_config", "model_from_config"]
