import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_model, sequence_data

from tf_gradual_prune import (
    GradualPruning,
    LiteRTRunner,
    RampedThresholdSchedule,
    export_tflite,
    find_prunable_weights,
    tflite_tensors,
)

L = keras.layers
X, Y = sequence_data(n=64, steps=6, features=8)


def pruned_model(block_size, target=0.9):
    """Bidirectional LSTM + stacked GRU + Dense, pruned by the callback."""
    model = compile_model(
        keras.Sequential(
            [
                keras.Input(X.shape[1:]),
                L.Bidirectional(L.LSTM(16, return_sequences=True)),
                L.GRU(16, return_sequences=True),
                L.SimpleRNN(16),
                L.Dense(16),
                L.Dense(3),
            ]
        )
    )
    # "uniform": every matrix at the target, so every one is worth storing sparse.
    schedule = RampedThresholdSchedule(2, 4, 12, 2, target_sparsity=target,
                                       allocation="uniform")
    callback = GradualPruning(schedule, weights="all", block_size=block_size)
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    return model


@pytest.fixture(scope="module")
def model4():
    keras.utils.set_random_seed(0)
    return pruned_model(4)


def keras_matrices(model):
    return {
        item.name: keras.ops.convert_to_numpy(item.variable)
        for item in find_prunable_weights(model, weights="all")
    }


def test_float_export_stores_every_pruned_kernel_block_sparse(model4, tmp_path):
    path = str(tmp_path / "model.tflite")
    report = export_tflite(model4, path, encoding="sparse")
    assert os.path.isfile(path)
    # Independent reading of the flatbuffer: every Keras matrix is found,
    # stored sparse in 1x4 blocks, and decodes to exactly the Keras values.
    stored = tflite_tensors.read_tensors(path)
    for name, values in keras_matrices(model4).items():
        hits = [t for t in stored if t.shape == values.T.shape
                and np.array_equal(t.values, values.T)]
        assert hits, name
        assert all(t.format == "sparse" and t.block == (1, 4) for t in hits), name
    by_weight = {t["keras_weight"]: t for t in report.tensors}
    assert set(by_weight) == set(keras_matrices(model4))
    assert report.not_sparse == []
    assert report.size_bytes < report.dense_size_bytes
    assert report.sparse_tensors >= len(by_weight)
    assert f"({report.size_ratio:.2f}x)" in str(report)
    assert report.max_error < 1e-4
    assert "sparse" in str(report) and "recommended interpreter" in str(report)


def test_keras_litert_export_with_our_settings_stores_the_same_sparse_tensors(
        model4, tmp_path):
    # What `export_tflite`'s docstring says of Keras' own LiteRT export.
    import inspect

    if "format" not in inspect.signature(model4.export).parameters:
        pytest.skip(f"Keras {keras.__version__} has no model.export(format=...)")
    ours = tflite_tensors.read_tensors(export_tflite(model4, str(tmp_path / "ours.tflite"),
                                                    encoding="sparse").path)
    theirs_path = str(tmp_path / "keras.tflite")
    model4.export(
        theirs_path, format="litert", verbose=False,
        input_signature=[tf.TensorSpec((1,) + X.shape[1:], tf.float32)],
        optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY],
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
    )
    theirs = tflite_tensors.read_tensors(theirs_path)

    def sparse(tensors):
        return sorted((t.shape, t.block, t.values.tobytes()) for t in tensors
                      if t.format == "sparse")

    assert len(sparse(ours)) >= len(keras_matrices(model4))
    assert sparse(theirs) == sparse(ours)


def test_exported_model_reproduces_keras_in_litert(model4, tmp_path):
    path = str(tmp_path / "model.tflite")
    report = export_tflite(model4, path, encoding="sparse")
    x = np.random.default_rng(5).normal(size=(4,) + X.shape[1:]).astype("float32")
    got = LiteRTRunner(path, delegate=report.delegate).run(x)
    np.testing.assert_allclose(got, model4.predict(x, verbose=0), atol=1e-4)


def test_sidecar_describes_inputs_outputs_and_metadata(model4, tmp_path):
    path = str(tmp_path / "speech.tflite")
    umask = os.umask(0o027)
    try:
        report = export_tflite(model4, path, metadata={"labels": ["a", "b", "c"]},
                               encoding="sparse")
    finally:
        os.umask(umask)
    # The permissions of a normally created file, not the temporary file's 0600.
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "speech.json").st_mode & 0o777 == 0o640
    sidecar = json.loads((tmp_path / "speech.json").read_text())
    assert report.sidecar_path == str(tmp_path / "speech.json")
    assert sidecar["model"] == "speech.tflite"
    assert sidecar["inputs"][0]["shape"] == [1, *X.shape[1:]]
    assert sidecar["outputs"][0]["shape"] == [1, 3]
    assert sidecar["metadata"] == {"labels": ["a", "b", "c"]}
    assert sidecar["interpreter"]["delegate"] == report.delegate
    assert sidecar["sparse_tensors"] == len(report.tensors)


def test_dynamic_int8_with_16_blocks_avoids_the_xnnpack_fault(tmp_path):
    keras.utils.set_random_seed(1)
    model = pruned_model(16)
    path = str(tmp_path / "int8.tflite")
    report = export_tflite(model, path, quantization="dynamic_int8", encoding="sparse")
    sparse = [t for t in report.tensors if t["format"] == "sparse"]
    assert any(t["block"] == [1, 16] for t in sparse)
    # The known XNNPACK fault on sparse int8: it fails to load or is wrong.
    xnnpack = report.errors["xnnpack"]
    assert isinstance(xnnpack, str) or not xnnpack <= 0.1
    assert report.delegate == "none"
    x = X[:4]
    got = LiteRTRunner(path, delegate="none").run(x)
    expected = model.predict(x, verbose=0)
    assert np.max(np.abs(got - expected)) <= 0.1 * max(1, np.max(np.abs(expected)))


def test_full_int8_export_with_representative_data(tmp_path):
    keras.utils.set_random_seed(2)
    x, y = sequence_data(n=64, steps=4, features=32)
    model = compile_model(
        keras.Sequential([keras.Input((4, 32)), L.GRU(32), L.Dense(3)])
    )
    schedule = RampedThresholdSchedule(1, 2, 6, 1, target_sparsity=0.9)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[GradualPruning(schedule, block_size=16)])
    path = str(tmp_path / "full.tflite")
    report = export_tflite(model, path, quantization="int8", encoding="sparse",
                           representative_data=x[:16], sample_inputs=x[16:24])
    assert report.quantization == "int8"
    assert report.max_error <= 0.2
    recurrent = [t for t in report.tensors if "gru" in t["keras_weight"]]
    assert recurrent and all(t["format"] == "sparse" for t in recurrent)
    got = LiteRTRunner(path, delegate=report.delegate).run(x[16:24])
    expected = model.predict(x[16:24], verbose=0)
    assert np.max(np.abs(got - expected)) <= 0.2 * max(1, np.max(np.abs(expected)))
    with pytest.raises(ValueError, match="needs `representative_data`"):
        export_tflite(model, path, quantization="int8")


def test_model_never_pruned_warns_and_still_exports(tmp_path):
    model = keras.Sequential([keras.Input((5, 3)), L.GRU(4), L.Dense(2)])
    path = tmp_path / "dense.tflite"
    with pytest.warns(UserWarning, match="nothing to encode sparsely"):
        report = export_tflite(model, str(path))
    assert path.exists()
    assert all(t["format"] == "dense" for t in report.tensors)
    # Nothing sparse: no comparison of the dense export with itself.
    assert report.sparse_tensors == 0
    size_line = next(line for line in str(report).splitlines() if line.startswith("size:"))
    assert "no tensor is stored sparse" in size_line and "x)" not in size_line


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(path="model.h5"), ValueError, r"must end in '.tflite'. Received: path='model.h5'"),
        (dict(path="/no/such/folder/m.tflite"), ValueError, "folder of `path` does not exist"),
        (dict(path=3), TypeError, "path=3"),
        (dict(quantization="int4"), ValueError, "quantization='int4'"),
        (dict(quantization="int8", representative_data=np.zeros((4, 5, 8))), ValueError,
         r"shape \(n, 6, 8\). Received shape \(4, 5, 8\)"),
        (dict(representative_data=np.zeros((4, 6, 8))), ValueError,
         "only used with quantization='int8'"),
        (dict(sample_inputs=np.zeros((4, 6))), ValueError,
         r"sample_inputs.*Received shape \(4, 6\)"),
        (dict(tolerance=-1), ValueError, "tolerance=-1"),
        (dict(metadata=[1]), TypeError, r"metadata=\[1\]"),
        (dict(encoding="fast"), ValueError, r"`encoding` must be one of .*encoding='fast'"),
        (dict(shrink_units="yes"), TypeError, r"shrink_units='yes'"),
    ],
)
def test_bad_arguments_leave_no_file(model4, tmp_path, kwargs, error, match):
    kwargs.setdefault("path", str(tmp_path / "m.tflite"))
    with pytest.raises(error, match=match):
        export_tflite(model4, **kwargs)
    assert os.listdir(tmp_path) == []


def test_divergence_beyond_tolerance_raises_and_leaves_no_file(model4, tmp_path):
    with pytest.raises(ValueError, match="does not reproduce Keras.*No file"):
        export_tflite(model4, str(tmp_path / "m.tflite"), tolerance=1e-30)
    assert os.listdir(tmp_path) == []


def test_unsupported_op_names_the_op(tmp_path):
    model = keras.Sequential(
        [keras.Input((16,)), L.Lambda(lambda x: tf.math.bessel_i0e(x)), L.Dense(3)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no TFLite builtin kernel: BesselI0e"):
            export_tflite(model, str(tmp_path / "m.tflite"))
    assert os.listdir(tmp_path) == []


def test_runner_errors(model4, tmp_path):
    path = str(tmp_path / "m.tflite")
    export_tflite(model4, path)
    with pytest.raises(ValueError, match="delegate='gpu'"):
        LiteRTRunner(path, delegate="gpu")
    with pytest.raises(ValueError, match="num_threads=0"):
        LiteRTRunner(path, num_threads=0)
    with pytest.raises(ValueError, match="No .tflite file"):
        LiteRTRunner(str(tmp_path / "missing.tflite"))
    runner = LiteRTRunner(path)
    with pytest.raises(ValueError, match=r"Received an array of shape \(1, 6, 7\)"):
        runner.run(np.zeros((1, 6, 7), "float32"))
    assert runner.latency_ms(X[:1], repeats=3, rounds=1) > 0


def test_input_shape_fixes_a_variable_length_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None, 4)), keras.layers.GRU(8),
                              keras.layers.Dense(3)])
    path = str(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match=r"pass `input_shape`, e.g. input_shape=\(100, 4\)"):
        export_tflite(model, path)
    with pytest.raises(ValueError, match=r"input_shape=\(12, 5\)"):
        export_tflite(model, path, input_shape=(12, 5))
    x = np.random.default_rng(1).normal(size=(3, 12, 4)).astype("float32")
    with pytest.warns(UserWarning, match="nothing to encode sparsely"):
        report = export_tflite(model, path, input_shape=(12, 4), sample_inputs=x)
    assert report.max_error <= 1e-4
    np.testing.assert_allclose(LiteRTRunner(path).run(x), model.predict(x, verbose=0),
                               atol=1e-4)


@pytest.fixture(scope="module")
def streaming_speech():
    """A unidirectional GRU recogniser pruned in 4-blocks, and test frames."""
    from tf_gradual_prune import models

    keras.utils.set_random_seed(0)
    model = models.speech_model(6, 4, units=16, layers=2, conv_filters=8,
                                bidirectional=False)
    model.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 18, 6)).astype("float32")
    y = rng.integers(0, 4, size=(16, 2)).astype("int32")
    schedule = RampedThresholdSchedule(1, 2, 4, 1, target_sparsity=0.8, allocation="uniform")
    model.fit(x, y, epochs=2, batch_size=4, verbose=0,
              callbacks=[GradualPruning(schedule, block_size=4)])
    return model, x


def test_streaming_export_runs_chunk_by_chunk_like_the_offline_model(streaming_speech, tmp_path):
    from tf_gradual_prune import StreamingRunner

    model, x = streaming_speech
    path = str(tmp_path / "stream.tflite")
    report = export_tflite(model, path, streaming=True, chunk_frames=9, sample_inputs=x[:3],
                           encoding="sparse")
    assert report.streaming["max_error_vs_offline"] <= 1e-4
    # The recurrent kernels stay sparse in the streaming file.
    recurrent = [t for t in report.tensors if "gru" in t["keras_weight"]]
    assert len(recurrent) == 4 and all(t["format"] == "sparse" for t in recurrent)
    sidecar = json.load(open(path[: -len(".tflite")] + ".json"))["streaming"]
    assert sidecar["chunk_frames"] == 9 and sidecar["output_frames"] == 3
    assert sidecar["chunk_input"] == "args_0" and sidecar["outputs"] == ["output_0"]
    assert [(s["input"], s["output"]) for s in sidecar["states"]] == [
        ("args_0_1", "output_1"), ("args_0_2", "output_2"), ("args_0_3", "output_3")]
    assert [s["shape"] for s in sidecar["states"]] == [[1, 6, 6], [1, 16], [1, 16]]
    runner = StreamingRunner(path)
    for utterance in x[3:6]:
        streamed = runner.run_stream(utterance)
        np.testing.assert_allclose(streamed, model.predict(utterance[None], verbose=0),
                                   atol=1e-4)
    # A length that is not whole chunks is padded with zero frames at the end.
    assert runner.run_stream(x[0, :10]).shape == (1, 6, 5)
    with pytest.raises(ValueError,
                       match=r"chunk has shape \(9, 6\).*Received an array of shape \(8, 6\)"):
        runner.push(x[0, :8])
    with pytest.raises(ValueError,
                       match=r"`frames` must have shape \(n, 6\).*Received shape \(18,\)"):
        runner.run_stream(x[0, :, 0])
    assert "3 state tensor(s) carried" in str(report)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(streaming=True), "needs `chunk_frames`"),
        (dict(chunk_frames=9), "only used with streaming=True"),
        (dict(streaming=1, chunk_frames=9), "streaming=1"),
        (dict(streaming=True, chunk_frames=9, input_shape=(9, 6)), "input_shape"),
        (dict(streaming=True, chunk_frames=9, quantization="int8",
              representative_data=np.zeros((2, 9, 6))), "requantised"),
        (dict(streaming=True, chunk_frames=9, sample_inputs=np.zeros((2, 5, 6))),
         r"frames >= chunk_frames=9.*Received shape \(2, 5, 6\)"),
        (dict(streaming=True, chunk_frames=8), "not a multiple of its stride 3"),
        (dict(streaming=True, chunk_frames=9, encoding="gathered"),
         "encoding='gathered'.*streaming=True"),
    ],
)
def test_streaming_arguments_are_checked(streaming_speech, tmp_path, kwargs, match):
    model, _ = streaming_speech
    error = TypeError if type(kwargs.get("streaming")) is int else ValueError
    with pytest.raises(error, match=match):
        export_tflite(model, str(tmp_path / "m.tflite"), **kwargs)
    assert os.listdir(tmp_path) == []


def test_streaming_runner_refuses_a_model_that_does_not_stream(model4, tmp_path):
    from tf_gradual_prune import StreamingRunner

    path = str(tmp_path / "m.tflite")
    export_tflite(model4, path)
    with pytest.raises(ValueError, match="Not a streaming model"):
        StreamingRunner(path)


def test_several_inputs_and_outputs_keep_their_order(tmp_path):
    # The interpreter lists tensors in graph order; the runner and the check
    # must use the signature's (Keras') order.
    keras.utils.set_random_seed(0)
    a, b = keras.Input((5, 3)), keras.Input((4,))
    h = L.GRU(4)(a, initial_state=b)
    model = keras.Model([a, b], [L.Dense(2)(h), h, L.Dense(7)(a)])
    path = str(tmp_path / "m.tflite")
    with pytest.warns(UserWarning, match="nothing to encode sparsely"):
        report = export_tflite(model, path)
    assert report.max_error <= 1e-4
    runner = LiteRTRunner(path)
    assert [tuple(d["shape"]) for d in runner.input_details] == [(1, 5, 3), (1, 4)]
    assert [tuple(d["shape"]) for d in runner.output_details] == [(1, 2), (1, 4), (1, 5, 7)]
    sidecar = json.load(open(path[: -len(".tflite")] + ".json"))
    assert [o["signature_key"] for o in sidecar["outputs"]] == ["output_0", "output_1", "output_2"]


def test_encoding_dense_and_auto(model4, tmp_path):
    dense = export_tflite(model4, str(tmp_path / "d.tflite"), encoding="dense")
    assert dense.encoding == "dense" and dense.sparse_tensors == 0
    assert list(dense.timings) == ["dense"]
    auto = export_tflite(model4, str(tmp_path / "a.tflite"))
    # Both encodings were timed (and a gathered copy where a layer's groups
    # read few enough inputs); the file is the one named, with its reason.
    assert {"sparse", "dense"} <= set(auto.timings) <= {"sparse", "dense", "gathered"}
    assert set(auto.timings) - {"sparse", "dense"} == set(
        ["gathered"] if auto.gathered["gathered"] else [])
    assert (auto.sparse_tensors > 0) == (auto.encoding == "sparse")
    assert f"encoding: {auto.encoding} (" in str(auto)


@pytest.fixture(scope="module")
def model_groups():
    """`pruned_model` in blocks of one input and 8 outputs."""
    keras.utils.set_random_seed(0)
    return pruned_model((1, 8))


def test_gathered_export_reproduces_keras_and_reports_each_matrix(model_groups, tmp_path):
    path = str(tmp_path / "g.tflite")
    report = export_tflite(model_groups, path, encoding="gathered")
    assert report.encoding == "gathered" and list(report.timings) == ["gathered"]
    assert set(report.gathered["gathered"]) == {
        layer.name for layer in model_groups.layers[:3]} and report.gathered["kept"] == {}
    rows = {t["keras_weight"]: t for t in report.tensors if t["format"] == "gathered"}
    recurrent = [n for n in keras_matrices(model_groups) if "cell" in n]
    assert sorted(rows) == sorted(recurrent) and len(rows) == 8
    for name, matrix in keras_matrices(model_groups).items():
        if name in rows:
            row = rows[name]
            assert row["shape"] == list(matrix.T.shape) and row["block"][1] == 1
            assert row["sparsity"] == pytest.approx(np.mean(matrix == 0))
            # Indices and blocks: more than the non-zeros, less than dense.
            assert 4 * np.count_nonzero(matrix) < row["bytes"] < 4 * matrix.size
    got = LiteRTRunner(path, delegate=report.delegate).run(X[:4])
    expected = keras.ops.convert_to_numpy(model_groups(X[:4]))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    sidecar = json.load(open(path[: -len(".tflite")] + ".json"))
    assert sidecar["encoding"] == "gathered"
    # Builtin ops only: the gathers and the batched products.
    assert {"GATHER", "BATCH_MATMUL", "WHILE"} <= tflite_tensors.operator_names(path)
    assert "encoding: gathered" in str(report)


def test_auto_times_the_gathered_copy_and_keeps_the_fastest(model_groups, tmp_path):
    from tf_gradual_prune.export import FASTER

    report = export_tflite(model_groups, str(tmp_path / "a.tflite"))
    assert set(report.timings) == {"sparse", "dense", "gathered"}
    best = {k: min(v.values()) for k, v in report.timings.items()}
    expected = "sparse"
    for challenger in ("dense", "gathered"):
        if best[challenger] < FASTER * best[expected]:
            expected = challenger
    assert report.encoding == expected
    assert f"encoding: {expected} (" in str(report)


def test_a_masked_model_exports_gathered_with_its_padding_masked(tmp_path):
    rng = np.random.default_rng(0)
    lstm = L.LSTM(16, return_sequences=True)
    model = keras.Sequential([keras.Input((6, 8)), L.Masking(), L.Bidirectional(lstm),
                              L.GRU(8), L.Dense(2)])
    for cell in (model.layers[1].forward_layer.cell, model.layers[1].backward_layer.cell):
        for variable in (cell.kernel, cell.recurrent_kernel):
            rows, cols = variable.shape
            keep = np.repeat(rng.random((rows, cols // 8)) < 0.15, 8, axis=1)
            variable.assign(rng.normal(size=(rows, cols)).astype("float32") * keep)
    x = rng.normal(size=(4, 6, 8)).astype("float32")
    x[0, 3:] = 0.0  # padding
    x[2, 5:] = 0.0
    path = str(tmp_path / "m.tflite")
    report = export_tflite(model, path, encoding="gathered", sample_inputs=x)
    assert list(report.gathered["gathered"]) == [model.layers[1].name]
    np.testing.assert_allclose(LiteRTRunner(path, delegate=report.delegate).run(x),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-4)


def test_auto_falls_back_when_the_gathered_copy_does_not_convert(model_groups, tmp_path,
                                                                 monkeypatch):
    from tf_gradual_prune import export

    convert = export._convert_model

    def failing(model, specs, quantization, representative, variants=("sparse", "dense")):
        if variants == ("sparse",):  # the gathered copy's conversion
            raise ValueError("converter failed")
        return convert(model, specs, quantization, representative, variants)

    monkeypatch.setattr(export, "_convert_model", failing)
    report = export_tflite(model_groups, str(tmp_path / "a.tflite"))
    assert report.encoding in ("sparse", "dense") and "gathered" not in report.timings
    assert report.gathered["gathered"] == {}
    assert all("did not convert: converter failed" in why
               for why in report.gathered["kept"].values()) and report.gathered["kept"]


def test_gathered_encoding_needs_a_layer_to_gather(tmp_path):
    model = keras.Sequential([keras.Input((6, 8)), L.LSTM(8, name="never_pruned"),
                              L.Dense(2)])
    with pytest.raises(ValueError, match=r"encoding='gathered'.*never_pruned: its output "
                       r"groups read too many inputs.*100% of the dense work"), \
            pytest.warns(UserWarning, match="no weight matrix with >= 30% zeros"):
        export_tflite(model, str(tmp_path / "m.tflite"), encoding="gathered")
    assert os.listdir(tmp_path) == []
