import os
import warnings

import keras
import numpy as np
import pytest

from tf_gradual_prune import export_tflite, find_prunable_weights, masking, tflite_tensors


def prune_by_hand(model, block, sparsity):
    """Zeros the smallest blocks of every matrix, without the callback."""
    for item in find_prunable_weights(model, weights="all"):
        values = keras.ops.convert_to_numpy(item.variable)
        scores = masking.block_magnitudes(values, block)
        keep = scores >= np.quantile(scores, sparsity)
        mask = masking.expand_blocks(keep, block, values.shape)
        item.variable.assign(values * mask)


@pytest.mark.parametrize("block", [1, 4, 16])
def test_decoded_tensors_equal_the_keras_weights(tmp_path, block):
    # 12 inputs: a 16-block runs past the end of the input axis.
    model = keras.Sequential(
        [keras.Input((5, 12)), keras.layers.LSTM(20), keras.layers.Dense(7)]
    )
    prune_by_hand(model, block, 0.8)
    path = str(tmp_path / "m.tflite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_tflite(model, path, encoding="sparse")
    stored = tflite_tensors.read_tensors(path)
    for item in find_prunable_weights(model, weights="all"):
        values = keras.ops.convert_to_numpy(item.variable).T
        hits = [t for t in stored if t.shape == values.shape]
        assert any(np.array_equal(t.values, values) for t in hits), item.name
    sparse = [t for t in stored if t.format == "sparse"]
    assert sparse
    assert tflite_tensors.operator_names(path) >= {"FULLY_CONNECTED", "WHILE"}
    for t in sparse:
        assert t.stored_values < t.values.size
        assert os.path.getsize(path) > t.bytes
