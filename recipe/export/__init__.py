"""Export a voice for the runtimes it is deployed with: Piper, sherpa-onnx, or plain ONNX.

`python -m recipe.export MODEL_DIR --format piper|sherpa-onnx|onnx --output_dir OUT [--quantize int8]`

- `graph`: the inference graph, traced through the model's own modules (`VitsInferenceGraph`).
- `piper_layout`, `sherpa_layout`, `onnx_layout`: each runtime's files, how it turns text into ids, and how to run it.
- `characters`: a character tokenizer as the table a runtime looks characters up in.
- `check`: parity of the runtime's audio with `VitsModel`'s, noise off.
- `quantize`: int8 weights.
- `exporter`: all of it in order, written to `OUT` only once the check passed (`output`), with a README (`readme`).

`onnx`, `onnxruntime`, `sherpa_onnx` and `piper` are imported only here, when needed (`dependencies`), never by
training.
"""

from recipe.export.errors import ExportError
from recipe.export.exporter import FORMATS, ExportResult, export_voice

__all__ = ["FORMATS", "ExportError", "ExportResult", "export_voice"]
