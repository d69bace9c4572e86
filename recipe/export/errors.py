"""The export's one error type."""

from recipe.errors import InputError


class ExportError(InputError, ValueError):
    """The model cannot be exported as asked: not a model folder, an unknown format, a vocabulary or voice the target
    runtime cannot express, an output folder in the way, or an export whose audio differs from the model's. The
    message names the cause."""
