"""Fine-tuning recipe for VITS / MMS-TTS models (`transformers.VitsModel`)."""

__version__ = "0.1.0"
