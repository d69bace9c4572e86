"""Featurized clips to one Arrow table, built from the NumPy arrays without per-row conversions.

`datasets.map` turns each row's NumPy arrays into Arrow arrays one by one (a flatten copy per array, then a
concatenation per batch) before it writes them, and a 5 s clip carries 411 KiB of them. Here each large column is one
concatenation into an Arrow buffer, and the map function returns the table, which `datasets` writes as it is.
The pipeline with it, against the commit before, on 400 clips of 16 kHz WAV: 327-385 clips/s against 230-248
(`benchmarks/README.md`; the same commit also stopped copying mono files on reading, which accounts for part of it).

    table = rows_to_table(rows, features)   # rows: dicts with a value for every column of `features`
"""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa

__all__ = ["rows_to_table"]


def _offsets(lengths) -> pa.Array:
    """Arrow list offsets (int32, as `datasets.List` and `Array2D` store them) for items of `lengths` values."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"{offsets[-1]} values in one batch do not fit an Arrow list's 32-bit offsets")
    return pa.array(offsets.astype(np.int32))


def _values(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """The arrays' values, flattened and concatenated (one copy), as Arrow values of `value_type`."""
    dtype = value_type.to_pandas_dtype()
    if not arrays:
        return pa.array(np.zeros(0, dtype=dtype))
    return pa.array(np.concatenate([array.reshape(-1) for array in arrays]).astype(dtype, copy=False))


def _list_array(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """A `datasets.List(Value(...))` column from 1-D arrays."""
    return pa.ListArray.from_arrays(_offsets([len(array) for array in arrays]), _values(arrays, value_type))


def _array2d_array(arrays: list[np.ndarray], arrow_type: pa.ExtensionType) -> pa.Array:
    """A `datasets.Array2D(shape=(None, width))` column from `(rows_i, width)` arrays; its storage is a list (one
    item per clip) of lists (one item per row) of values."""
    width = arrow_type.shape[1]
    for array in arrays:
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"expected arrays of shape (rows, {width}), got {array.shape}")
    row_counts = [array.shape[0] for array in arrays]
    values = _values(arrays, arrow_type.storage_type.value_type.value_type)
    rows = pa.ListArray.from_arrays(_offsets(np.full(sum(row_counts), width)), values)
    return pa.ExtensionArray.from_storage(arrow_type, pa.ListArray.from_arrays(_offsets(row_counts), rows))


def rows_to_table(rows: list[dict], features: datasets.Features) -> pa.Table:
    """One `pa.Table` with the schema of `features` (in its column order) from `rows`.

    Columns of `datasets.List(Value(...))` given as NumPy arrays and `datasets.Array2D` columns are built from one
    concatenated buffer each; every other column goes through `pa.array` with the feature's Arrow type.
    """
    schema = features.arrow_schema
    columns = []
    for field in schema:
        values = [row[field.name] for row in rows]
        feature = features[field.name]
        if isinstance(feature, datasets.Array2D):
            columns.append(_array2d_array(values, field.type))
        elif (
            isinstance(feature, datasets.List)
            and isinstance(feature.feature, datasets.Value)
            and all(isinstance(value, np.ndarray) for value in values)
        ):
            columns.append(_list_array(values, field.type.value_type))
        else:
            columns.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)
