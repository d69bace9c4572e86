"""Evaluation: audio metrics (level, silence, MCD, duration), intelligibility (ASR, CER) and `python -m
recipe.compare` with its report.

`recipe.evaluation.mel_cepstral_distortion` is named in the README of every exported voice: it stays importable
from here.
"""

from recipe.evaluation.metrics import amplitude_stats, amplitude_status, duration_ratio, mel_cepstral_distortion

__all__ = ["amplitude_stats", "amplitude_status", "duration_ratio", "mel_cepstral_distortion"]
