import datasets
import numpy as np
import pytest

from recipe.data.feature_table import rows_to_table

FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int32")),
        "waveform": datasets.List(datasets.Value("float32")),
        "log_mel": datasets.Array2D(shape=(None, 3), dtype="float32"),
        "length": datasets.Value("int64"),
        "text": datasets.Value("string"),
        "speaker_id": datasets.ClassLabel(names=["a", "b"]),
    }
)


def _rows():
    rng = np.random.default_rng(0)
    return [
        {
            "input_ids": [4, 5, 6],
            "waveform": rng.standard_normal(7).astype(np.float32),
            "log_mel": rng.standard_normal((4, 3)).astype(np.float32),
            "length": 7,
            "text": "çê",
            "speaker_id": 1,
        },
        # a dropped clip: empty arrays
        {
            "input_ids": [],
            "waveform": np.zeros(0, np.float32),
            "log_mel": np.zeros((0, 3), np.float32),
            "length": 0,
            "text": "",
            "speaker_id": 0,
        },
        {
            "input_ids": [1],
            "waveform": rng.standard_normal(2).astype(np.float32),
            "log_mel": rng.standard_normal((1, 3)).astype(np.float32),
            "length": 2,
            "text": "x",
            "speaker_id": 0,
        },
    ]


def test_table_holds_what_datasets_builds_from_the_same_rows():
    rows = _rows()
    table = rows_to_table(rows, FEATURES)
    expected = datasets.Dataset.from_list(rows, features=FEATURES)
    built = datasets.Dataset(table)
    assert built.features == FEATURES
    assert built.to_dict() == expected.to_dict()
    as_numpy = built.with_format("numpy")
    for index, row in enumerate(rows):
        np.testing.assert_array_equal(as_numpy[index]["waveform"], row["waveform"])
        assert as_numpy[index]["waveform"].dtype == np.float32
        assert np.asarray(as_numpy[index]["log_mel"]).reshape(-1, 3).shape == row["log_mel"].shape


def test_a_map_that_returns_the_table_writes_the_same_dataset(tmp_path):
    rows = _rows()
    source = datasets.Dataset.from_dict({"index": list(range(len(rows)))})
    mapped = source.map(
        lambda batch: rows_to_table([rows[i] for i in batch["index"]], FEATURES),
        batched=True,
        batch_size=2,
        remove_columns=["index"],
        features=FEATURES,
        cache_file_name=str(tmp_path / "mapped.arrow"),
    )
    assert mapped.to_dict() == datasets.Dataset.from_list(rows, features=FEATURES).to_dict()


def test_mel_of_the_wrong_width_is_refused():
    rows = _rows()
    rows[0]["log_mel"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"shape \(rows, 3\), got \(4, 5\)"):
        rows_to_table(rows, FEATURES)
