"""Across Keras backends, and data-parallel pruning on JAX.

The core's own tests (schedules, masking, properties, callbacks, reliability)
are backend-neutral: .ci/run runs them with KERAS_BACKEND=jax and =torch as
well as on TensorFlow. This file checks what needs two backends or several
devices, each backend in a subprocess of its own (Keras fixes the backend at
import), so it runs the same whatever backend pytest itself runs on. It needs
jax, which the newest-stack virtualenv of .ci/run installs (JAX's wheels need
numpy 2).
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="needs jax (pip install jax; .ci/run's TF 2.21 virtualenv has it)",
)

# A small pruned recogniser-like model: 96 sequences, batch 8, 12 steps an
# epoch; the schedule calibrates at 6 and updates every 3 steps up to 60.
COMMON = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import keras
    sys.path.insert(0, os.path.join({repo!r}, "tests"))
    from conftest import compile_model, sequence_data
    import tf_gradual_prune as tgp

    X, Y = sequence_data()

    def build():
        keras.utils.set_random_seed(0)
        return compile_model(keras.Sequential([
            keras.Input(X.shape[1:]),
            keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True)),
            keras.layers.GRU(8),
            keras.layers.Dense(3),
        ]))

    def prune(model, x=X, y=Y, batch_size=8):
        schedule = tgp.RampedThresholdSchedule(6, 24, 60, 3, target_sparsity=0.8,
                                               allocation="uniform")
        model.fit(x, y, batch_size=batch_size, epochs=6, shuffle=False, verbose=0,
                  callbacks=[tgp.GradualPruning(schedule)])
        return model

    def zeros(model):
        return {{item.name: keras.ops.convert_to_numpy(item.variable).__eq__(0).tolist()
                for item in tgp.find_prunable_weights(model)}}
    """
).format(repo=REPO)

PRUNE_AND_SAVE = COMMON + textwrap.dedent(
    """
    model = prune(build())
    model.save(sys.argv[1])
    print("RESULT" + json.dumps({"backend": keras.backend.backend(),
                                 "sparsity": tgp.sparsity_table(model, "recurrent").sparsity,
                                 "zeros": zeros(model)}))
    """
)

LOAD_AND_EXPORT = COMMON + textwrap.dedent(
    """
    model = keras.saving.load_model(sys.argv[1])
    report = tgp.export_tflite(model, sys.argv[2], encoding="sparse")
    sparse = sorted(t["keras_weight"] for t in report.tensors
                    if t["format"] == "sparse" and t["keras_weight"])
    print("RESULT" + json.dumps({"backend": keras.backend.backend(), "zeros": zeros(model),
                                 "sparse": sparse, "verified": report.max_error is not None}))
    """
)

TF_ONLY_PARTS = COMMON + textwrap.dedent(
    """
    from tf_gradual_prune import models
    messages = {}
    try:
        tgp.export_tflite(build(), os.path.join(sys.argv[1], "m.tflite"))
    except RuntimeError as error:
        messages["export"] = str(error)
    try:
        models.speech_model(40, 11, units=8, layers=1, conv_filters=8)
    except RuntimeError as error:
        messages["ctc"] = str(error)
    print("RESULT" + json.dumps({"backend": keras.backend.backend(), "messages": messages,
                                 "files": os.listdir(sys.argv[1])}))
    """
)

DATA_PARALLEL = COMMON + textwrap.dedent(
    """
    import jax
    mode = sys.argv[1]
    if mode == "process":
        # One of two processes on localhost, one CPU device each.
        port, index = sys.argv[2], int(sys.argv[3])
        keras.distribution.initialize(f"localhost:{port}", num_processes=2,
                                      process_id=index)
    devices = jax.devices()
    x, y, batch = X, Y, 8
    if mode != "single":
        distribution = keras.distribution.DataParallel(devices=devices)
        if mode == "process":
            # Each process feeds its half of every global batch of 8.
            distribution.auto_shard_dataset = False
            x = X.reshape(12, 8, *X.shape[1:])[:, index::2].reshape(-1, *X.shape[1:])
            y = Y.reshape(12, 8)[:, index::2].reshape(-1)
            batch = 4
        keras.distribution.set_distribution(distribution)
    model = prune(build(), x, y, batch)
    shards = {}
    for item in tgp.find_prunable_weights(model):
        value = item.variable.value
        shards[item.name] = [np.asarray(s.data).tolist() for s in value.addressable_shards]
    print("RESULT" + json.dumps({"devices": len(devices), "shards": shards}))
    """
)


def run_script(code, *args, backend, extra_env=None, timeout=900):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(extra_env or {})
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise AssertionError(done.stderr[-4000:])


def test_model_pruned_on_jax_loads_under_tensorflow_and_exports_sparse(tmp_path):
    saved = str(tmp_path / "pruned.keras")
    pruned = run_script(PRUNE_AND_SAVE, saved, backend="jax")
    assert pruned["backend"] == "jax"
    assert pruned["sparsity"] == pytest.approx(0.8, abs=0.02)
    loaded = run_script(LOAD_AND_EXPORT, saved, str(tmp_path / "m.tflite"),
                        backend="tensorflow")
    assert loaded["backend"] == "tensorflow" and loaded["verified"]
    # The zeros pruned on JAX are the zeros TensorFlow loads ...
    assert loaded["zeros"].keys() == pruned["zeros"].keys()
    for name, mask in pruned["zeros"].items():
        np.testing.assert_array_equal(loaded["zeros"][name], mask, err_msg=name)
    # ... and every pruned matrix is stored sparse in the .tflite file.
    assert len(loaded["sparse"]) == len(pruned["zeros"]) == 6


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_tensorflow_only_parts_say_so_on_other_backends(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"needs {backend}")
    result = run_script(TF_ONLY_PARTS, str(tmp_path), backend=backend)
    assert result["backend"] == backend
    for part, name in (("export", "`export_tflite`"), ("ctc", "`CTCModel`")):
        message = result["messages"][part]
        assert name in message and repr(backend) in message
        assert "KERAS_BACKEND=tensorflow" in message
    assert result["files"] == []  # nothing half-written


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def check_like_one_device(replicas, single):
    """Every replica equal; equal to the one-device run up to the
    all-reduce's float rounding (the same global batches); at the target."""
    zero_share = []
    for name, one in single["shards"].items():
        one = np.array(one[0])
        copies = [np.array(r) for r in replicas[name]]
        assert len(copies) == 2, name
        np.testing.assert_array_equal(copies[0], copies[1], err_msg=name)
        np.testing.assert_allclose(copies[0], one, atol=1e-5, err_msg=name)
        assert np.mean((copies[0] == 0) == (one == 0)) > 0.995, name
        zero_share.append(np.mean(copies[0] == 0))
    assert np.mean(zero_share) == pytest.approx(0.8, abs=0.02)


@pytest.fixture(scope="module")
def one_device():
    return run_script(DATA_PARALLEL, "single", backend="jax")


def test_data_parallel_on_two_devices_prunes_like_one_device(one_device):
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    parallel = run_script(DATA_PARALLEL, "parallel", backend="jax", extra_env=flags)
    assert parallel["devices"] == 2
    check_like_one_device(parallel["shards"], one_device)


def test_two_processes_on_localhost_prune_like_one_device(one_device):
    port = str(free_port())
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    first = subprocess.Popen([sys.executable, "-c", DATA_PARALLEL, "process", port, "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        second = run_script(DATA_PARALLEL, "process", port, "1", backend="jax")
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    lines = [line for line in out.splitlines() if line.startswith("RESULT")]
    assert lines, err[-4000:]
    first = json.loads(lines[0][len("RESULT"):])
    assert first["devices"] == second["devices"] == 2
    # Each process holds one replica; together they must agree.
    replicas = {name: first["shards"][name] + second["shards"][name]
                for name in first["shards"]}
    check_like_one_device(replicas, one_device)
