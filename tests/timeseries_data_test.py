import numpy as np
import pytest

from tf_gradual_prune import timeseries_data

TS_FILE = """# a comment
@problemName Tiny
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3:4,5,6:a
0.5,0.25:1,2:b
"""


def test_read_ts_parses_channels_lengths_and_labels(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TS_FILE)
    sequences, labels, classes = timeseries_data.read_ts(str(path))
    assert classes == ["a", "b"] and labels == [0, 1]
    np.testing.assert_array_equal(sequences[0], [[1, 4], [2, 5], [3, 6]])
    assert sequences[1].shape == (2, 2) and sequences[1].dtype == np.float32


@pytest.mark.parametrize(
    "text, match",
    [
        (TS_FILE.replace("1,2,3:4,5,6:a", "1,2,3:4,5:a"), "line 7: channels of different"),
        (TS_FILE.replace(":b\n", ":c\n"), "label 'c' is not one of"),
        (TS_FILE.replace("@classLabel true a b", "@classLabel false"), "no class labels"),
        (TS_FILE.split("@data")[0] + "@data\n", "holds no sequences"),
    ],
)
def test_read_ts_errors_name_the_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.ts"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        timeseries_data.read_ts(str(path))


def test_ts_classification_from_a_folder_and_missing_problem(tmp_path):
    (tmp_path / "Tiny").mkdir()
    for split in ("TRAIN", "TEST"):
        (tmp_path / "Tiny" / f"Tiny_{split}.ts").write_text(TS_FILE)
    (x, y), (xt, yt), classes = timeseries_data.ts_classification("Tiny", str(tmp_path))
    assert len(x) == len(xt) == 2 and list(y) == [0, 1] and classes == ["a", "b"]
    with pytest.raises(ValueError, match="'Other'.*does not exist"):
        timeseries_data.ts_classification("Other", str(tmp_path))


def test_japanese_vowels_from_the_files_aeon_ships():
    try:
        timeseries_data.aeon_data_dir()
    except ValueError as error:
        pytest.skip(f"aeon's data files are not installed ({error}); .ci/run installs them")
    (x, y), (xt, yt), classes = timeseries_data.ts_classification("JapaneseVowels")
    assert (len(x), len(xt)) == (270, 370)
    assert classes == [str(i) for i in range(1, 10)]
    assert np.bincount(y).tolist() == [30] * 9
    assert all(s.shape[1] == 12 and 7 <= len(s) <= 29 for s in x + xt)
