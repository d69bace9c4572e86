"""Piper voices: import (ONNX voices and training checkpoints), the type-2 decoder, the phoneme tokenizer, weight
names, the warm-up of parts a voice file lacks, and `python -m recipe.piper`.

piper-tts is GPL-3.0 and an optional extra: it is imported inside the functions that need it, never at import
time of a module here.
"""
