"""Fine-tuning recipe for VITS / MMS-TTS models (`transformers.VitsModel`).

The package follows the data, one concept per subpackage:

    audio, text     shared leaves: reading, resampling and spectrograms; text normalization and uroman
    data/           sources (the registry of dataset layouts), audio and text screening, features, splits,
                    the feature cache and its report, the collator, replay of earlier data
    model/          the training forward, losses, alignment, duration NLL, discriminator, preparation for
                    training, vocabulary extension
    training/       arguments and their parser, the trainer and its parts, callbacks, the amplitude monitor,
                    checkpoints, signals, the time budget, the Hub
    evaluation/     metrics (level, MCD), ASR, `python -m recipe.compare` and its report
    voices/         the one loader of every voice, what a model folder says about itself, synthesis
    piper/          Piper voices: import, type-2 decoder, phoneme tokenizer, weight names, warm-up, its command
    export/         ONNX, Piper and sherpa-onnx

Layering, held by `tests/test_layout.py`:
    - `audio` and `text` import nothing of the recipe;
    - `data` and `model` never import `training`;
    - piper-tts (GPL-3.0, the `piper` extra), onnx and onnxruntime are imported only under `piper/` and
      `export/`, and only inside the functions that need them: importing `recipe.training` or `recipe.voices`
      loads none of them.
"""

__version__ = "0.1.0"
