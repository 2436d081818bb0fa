import re

import keras
import numpy as np
import pytest
from conftest import sequence_data

from tf_gradual_prune import (
    GradualPruning,
    LiteRTRunner,
    RampedThresholdSchedule,
    export_tflite,
    models,
)
from tf_gradual_prune.shrinking import dead_units, shrink_units

L = keras.layers
X, Y = sequence_data(n=64, steps=6, features=8)


def kill(layer, units):
    """Zeroes the columns and biases of `units` in a recurrent layer."""
    kernel, recurrent, *bias = layer.get_weights()
    size = layer.cell.units
    columns = np.concatenate([g * size + np.asarray(units)
                              for g in range(kernel.shape[1] // size)])
    kernel[:, columns] = 0
    recurrent[:, columns] = 0
    bias = [b.copy() for b in bias]
    for b in bias:
        b[..., columns] = 0
    layer.set_weights([kernel, recurrent] + bias)


@pytest.mark.parametrize("layer", [L.LSTM, L.GRU, L.SimpleRNN])
def test_dead_units_are_removed_and_the_outputs_stay_the_same(layer):
    model = keras.Sequential([keras.Input((6, 8)), layer(10, return_sequences=True),
                              L.Dropout(0.1), L.ReLU(), layer(7), L.Dense(3)])
    kill(model.layers[0], [1, 4, 5])
    kill(model.layers[3], [0])
    assert list(np.flatnonzero(dead_units(model.layers[0]))) == [1, 4, 5]
    shrunk, report = shrink_units(model)
    assert report == {"shrunk": {model.layers[0].name: [10, 7], model.layers[3].name: [7, 6]},
                      "kept": {}}
    assert shrunk.layers[0].units == 7 and shrunk.layers[3].units == 6
    assert shrunk.layers[3].cell.kernel.shape[0] == 7
    np.testing.assert_allclose(shrunk.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-6)


def test_bidirectional_directions_keep_as_many_units_as_the_livelier_needs():
    model = keras.Sequential([keras.Input((6, 8)),
                              L.Bidirectional(L.GRU(9, return_sequences=True)),
                              L.Bidirectional(L.LSTM(5)), L.Dense(3)])
    first = model.layers[0]
    kill(first.forward_layer, [0, 3, 4, 8])
    kill(first.backward_layer, [2, 7])
    kill(model.layers[1].backward_layer, [1])
    shrunk, report = shrink_units(model)
    # Forward keeps its 5 live units plus 2 dead ones, backward its 7 live.
    assert report["shrunk"] == {first.name: [9, 7], model.layers[1].name: [5, 5]}
    assert shrunk.layers[0].forward_layer.units == 7
    assert shrunk.layers[1].forward_layer.cell.kernel.shape[0] == 14
    np.testing.assert_allclose(shrunk.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-6)


def test_a_time_distributed_reader_loses_the_rows_of_dead_units():
    model = keras.Sequential([keras.Input((6, 8)), L.LSTM(6, return_sequences=True),
                              L.TimeDistributed(L.Dense(4))])
    kill(model.layers[0], [0, 5])
    shrunk, report = shrink_units(model)
    assert report["shrunk"] == {model.layers[0].name: [6, 4]}
    np.testing.assert_allclose(shrunk.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-6)


def test_nothing_dead_gives_the_model_itself():
    model = keras.Sequential([keras.Input((6, 8)), L.GRU(5), L.Dense(3)])
    assert shrink_units(model) == (model, {"shrunk": {}, "kept": {}})


@pytest.mark.parametrize(
    "layers, why",
    [
        ([L.GRU(5)], "it is the model's output"),
        ([L.GRU(5, return_sequences=True), L.LayerNormalization(), L.GRU(3)],
         r"read by 'layer_normalization.*' \(LayerNormalization\)"),
        ([L.GRU(5, return_sequences=True), L.Activation("sigmoid"), L.GRU(3)],
         "maps 0 to a non-zero value"),
        ([L.SimpleRNN(5, activation="sigmoid"), L.Dense(3)], "maps 0 to a non-zero value"),
        ([L.Bidirectional(L.GRU(5), merge_mode="sum"), L.Dense(3)], "merge_mode='sum'"),
    ],
)
def test_dead_units_that_cannot_go_are_kept_with_the_reason(layers, why):
    model = keras.Sequential([keras.Input((6, 8))] + layers)
    first = model.layers[0]
    for layer in ([first.forward_layer, first.backward_layer]
                  if isinstance(first, L.Bidirectional) else [first]):
        kill(layer, [2])
    shrunk, report = shrink_units(model)
    assert shrunk is model and report["shrunk"] == {}
    assert list(report["kept"]) == [model.layers[0].name]
    assert "dead unit(s) kept" in report["kept"][model.layers[0].name]
    assert re.search(why, report["kept"][model.layers[0].name])


def test_unit_pruned_recogniser_exports_smaller_dense_layers(tmp_path):
    keras.utils.set_random_seed(0)
    model = models.speech_model(8, 4, rnn="lstm", units=24, layers=2, conv_filters=8,
                                bidirectional=False)
    model.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 12, 8)).astype("float32")
    y = rng.integers(0, 4, size=(32, 2)).astype("int32")
    schedule = RampedThresholdSchedule(2, 6, 12, 2, target_sparsity=0.8)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0,
              callbacks=[GradualPruning(schedule, granularity="units")])
    path = str(tmp_path / "m.tflite")
    report = export_tflite(model, path, input_shape=(12, 8), sample_inputs=x[:4])
    (first, (before, after)), *_ = report.shrunk["shrunk"].items()
    assert before == 24 and after < 12
    assert f"shrunk: {first} 24 -> {after} units" in str(report)
    kernel = next(t for t in report.tensors if t["keras_weight"] == f"{first}/lstm_cell/kernel")
    assert kernel["shape"] == [4 * after, 8] and kernel["format"] == "dense"
    np.testing.assert_allclose(LiteRTRunner(path).run(x[4:8]), model.predict(x[4:8], verbose=0),
                               atol=1e-4)
    # Unshrunk on request: the same sizes as the Keras model.
    full = export_tflite(model, path, input_shape=(12, 8), shrink_units=False, encoding="dense")
    assert full.shrunk == {"shrunk": {}, "kept": {}} and full.size_bytes > report.size_bytes
    # And streaming from the shrunk layers.
    stream = export_tflite(model, str(tmp_path / "s.tflite"), streaming=True, chunk_frames=6)
    assert stream.shrunk == report.shrunk
    assert stream.streaming["max_error_vs_offline"] <= 1e-4
