"""The export's optional dependencies, imported only when an export or a runtime check needs them.

`onnx`, `onnxruntime`, `sherpa_onnx` and `piper` (piper-tts) come with the `export` extra; training never imports
them, so the main install stays lean.
"""

from __future__ import annotations

import importlib

from recipe.errors import MissingExtraError

# module name -> the distribution that provides it
_DISTRIBUTIONS = {
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxruntime.quantization": "onnxruntime",
    "sherpa_onnx": "sherpa-onnx",
    "piper": "piper-tts",
}


def require(module_name: str):
    """Import `module_name`, or fail with the command that installs it.

    Args:
        module_name (`str`): one of `onnx`, `onnxruntime`, `onnxruntime.quantization`, `sherpa_onnx`, `piper`.

    Returns:
        The imported module.

    Raises:
        `MissingExtraError` (an `ImportError`) naming the missing distribution and `pip install -e ".[export]"`.
    """
    if module_name not in _DISTRIBUTIONS:
        raise ValueError(f"{module_name!r} is not an export dependency; known: {', '.join(_DISTRIBUTIONS)}")
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise MissingExtraError(
            f"The export needs {_DISTRIBUTIONS[module_name]} ({module_name} could not be imported: {error}). "
            'Install the export extra: pip install -e ".[export]"'
        ) from error
