"""Int8 weight quantization of an exported graph (onnxruntime's dynamic quantization).

Weights of the matrix products and convolutions become int8 (`MatMulInteger`, `ConvInteger`), activations are
quantized on the fly; transposed convolutions (the decoder's upsampling) stay float, as onnxruntime has no integer
kernel for them. What it costs in quality is measured by the export's check (MCD and level against the model) and by
`benchmarks/export_parity.py --quantize int8` (against the float export).
"""

from __future__ import annotations

import logging

from recipe.export.dependencies import require

QUANTIZATIONS = ("int8",)


def quantize_int8(source: str, target: str) -> None:
    """Write the int8 version of the graph `source` to `target`."""
    quantization = require("onnxruntime.quantization")
    # onnxruntime logs a warning for each tensor whose type its shape inference cannot settle (the graph's
    # data-dependent lengths); those tensors are the integer index arithmetic, which is not quantized anyway
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantization.quantize_dynamic(source, target, weight_type=quantization.QuantType.QInt8)
    finally:
        root.setLevel(level)
