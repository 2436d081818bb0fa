"""Resume, save/load, distribution and mixed precision."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, compile_model, sequence_data

from tf_gradual_prune import (
    GradualPruning,
    RampedThresholdSchedule,
    find_prunable_weights,
    sparsity_table,
)

L = keras.layers
X, Y = sequence_data()
EPOCHS, HALF = 6, 3
# .ci/run runs this file on the JAX backend too; these tests use TensorFlow
# itself (tf.distribute, SavedModel) and run in the TensorFlow pass.
TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="uses tf.distribute or SavedModel: runs with the TensorFlow backend",
)


@pytest.fixture(scope="module", autouse=True)
def deterministic_ops():
    if keras.backend.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()
    yield


def build(seed=0):
    keras.utils.set_random_seed(seed)
    return compile_model(
        keras.Sequential([keras.Input(X.shape[1:]), L.LSTM(8), L.Dense(3)])
    )


def schedule(calibration, step_scale=None):
    # 12 steps an epoch: calibration at 6, updates every 3 steps to 60.
    return RampedThresholdSchedule(
        6, 24, 60, 3, target_sparsity=0.8, calibration=calibration, step_scale=step_scale
    )


def fit(model, callbacks, epochs, initial_epoch=0):
    return model.fit(
        X, Y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch,
        shuffle=False, verbose=0, callbacks=callbacks,
    )


def weights_of(model):
    return [keras.ops.convert_to_numpy(i.variable) for i in find_prunable_weights(model)]


def uninterrupted(calibration, tmp_path, step_scale=None):
    model = build()
    fit(model, [GradualPruning(schedule(calibration, step_scale),
                               state_path=str(tmp_path / "a.json"))], EPOCHS)
    return weights_of(model)


@pytest.mark.parametrize("calibration, step_scale", [
    ("begin", None), ("track", None), ("spread", None), ("geometric", None),
    ("geometric", "fan_in")])
def test_resume_from_keras_file_and_state_is_bit_identical(calibration, step_scale, tmp_path):
    reference = uninterrupted(calibration, tmp_path, step_scale)
    state = str(tmp_path / "state.json")
    model = build()
    fit(model, [GradualPruning(schedule(calibration, step_scale), state_path=state)], HALF)
    assert 0 < sparsity_table(model, weights="recurrent").sparsity < 0.8  # mid-ramp
    model.save(str(tmp_path / "mid.keras"))
    restored = keras.saving.load_model(str(tmp_path / "mid.keras"))
    # Already sparse on disk: no strip step.
    assert sparsity_table(restored, weights="recurrent").sparsity > 0
    fit(restored, [GradualPruning(schedule(calibration, step_scale), state_path=state)],
        EPOCHS, initial_epoch=HALF)
    for got, expected in zip(weights_of(restored), reference):
        np.testing.assert_array_equal(got == 0, expected == 0)
        np.testing.assert_array_equal(got, expected)


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == HALF - 1:
            raise RuntimeError("simulated preemption")


def test_backup_and_restore_resumes_bit_identical(tmp_path):
    reference = uninterrupted("begin", tmp_path)
    backup = str(tmp_path / "backup")
    state = str(tmp_path / "state.json")

    def callbacks(extra):
        return [
            GradualPruning(schedule("begin"), state_path=state),
            keras.callbacks.BackupAndRestore(backup),
        ] + extra

    model = build()
    with pytest.raises(RuntimeError, match="simulated preemption"):
        fit(model, callbacks([Interrupt()]), EPOCHS)
    # A new process would build the model afresh: so does this.
    fresh = build(seed=99)
    history = fit(fresh, callbacks([]), EPOCHS)
    assert len(history.history["loss"]) == EPOCHS - HALF
    for got, expected in zip(weights_of(fresh), reference):
        np.testing.assert_array_equal(got, expected)


def test_get_and_set_state_round_trip_and_errors(tmp_path):
    model = build()
    callback = GradualPruning(schedule("begin"))
    fit(model, [callback], HALF)
    state = callback.get_state()
    assert json.loads(json.dumps(state)) == state
    assert state["step"] == HALF * 12
    assert state["groups"][0]["slopes"] is not None
    other = GradualPruning(schedule("begin"))
    other.set_state(state)
    fit(model, [other], HALF + 1, initial_epoch=HALF)
    assert other.get_state()["groups"][0]["slopes"] == state["groups"][0]["slopes"]
    with pytest.raises(ValueError, match="No state yet"):
        GradualPruning(schedule("begin")).get_state()
    with pytest.raises(ValueError, match="state=3"):
        GradualPruning(schedule("begin")).set_state(3)
    mismatched = GradualPruning(schedule("begin"))
    mismatched.set_state({"groups": [{}, {}]})
    with pytest.raises(ValueError, match="2 group"):
        fit(build(), [mismatched], 1)
    with pytest.raises(TypeError, match="state_path=5"):
        GradualPruning(schedule("begin"), state_path=5)


@TF_ONLY
def test_saved_model_and_weights_files_keep_the_sparsity(tmp_path):
    model = build()
    fit(model, [GradualPruning(schedule("track"))], EPOCHS)
    x = X[:4]
    expected = model.predict(x, verbose=0)
    model.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(x).numpy(), expected, atol=1e-5)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    again = build(seed=5)
    again.load_weights(str(tmp_path / "w.weights.h5"))
    for got, original in zip(weights_of(again), weights_of(model)):
        np.testing.assert_array_equal(got, original)
    assert sparsity_table(again, weights="recurrent").sparsity == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_prunes_the_float32_variables(policy):
    keras.config.set_dtype_policy(policy)
    try:
        model = build()
        history = fit(model, [GradualPruning(schedule("track"))], EPOCHS)
    finally:
        keras.config.set_dtype_policy("float32")
    for item in find_prunable_weights(model):
        assert item.variable.dtype == "float32"
    assert sparsity_table(model, weights="recurrent").sparsity == pytest.approx(0.8, abs=0.02)
    assert np.isfinite(history.history["loss"][-1])


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    sys.path.insert(0, sys.argv[1])
    from conftest import sequence_data
    import tf_gradual_prune as tgp
    x, y = sequence_data()
    def run(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.LSTM(8),
                                      keras.layers.Dense(3)])
            model.compile(keras.optimizers.SGD(0.1),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        schedule = tgp.RampedThresholdSchedule(6, 24, 60, 3, target_sparsity=0.8,
                                               allocation="uniform",
                                               step_scale=json.loads(sys.argv[2]))
        model.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0,
                  callbacks=[tgp.GradualPruning(schedule)])
        out = []
        for item in tgp.find_prunable_weights(model):
            values = getattr(item.variable.value, "values", None) or [item.variable.value]
            out.append([np.asarray(v).tolist() for v in values])
        return out
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print("RESULT" + json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "mirrored": run(mirrored),
        "single": run(tf.distribute.OneDeviceStrategy("/cpu:0")),
    }))
    """
)


def run_script(code, *args, env=None, timeout=600):
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True,
        timeout=timeout, env=env,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise AssertionError(done.stderr[-4000:])


@TF_ONLY
@pytest.mark.parametrize("step_scale", [None, "fan_in"])
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(step_scale):
    result = run_script(MIRRORED, os.path.join(REPO, "tests"), json.dumps(step_scale))
    assert result["replicas"] == 2
    for replicas, single in zip(result["mirrored"], result["single"]):
        replicas = [np.array(r) for r in replicas]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])
        single = np.array(single[0])
        # Same global batch: equal up to the all-reduce's float rounding.
        np.testing.assert_allclose(replicas[0], single, atol=1e-5)
        agree = np.mean((replicas[0] == 0) == (single == 0))
        assert agree > 0.995
        assert np.mean(replicas[0] == 0) == pytest.approx(0.8, abs=0.02)


# Keras 3's `fit` does not run under MultiWorkerMirroredStrategy (keras-team/
# keras#20585: "Attempt to convert a value (PerReplica...)", pruning or not),
# so the workers train with a custom loop that drives the callback itself.
WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, tensorflow as tf
    if os.environ.get("TF_CONFIG"):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    import keras
    sys.path.insert(0, sys.argv[1])
    from conftest import sequence_data
    import tf_gradual_prune as tgp
    x, y = sequence_data()
    batch = 8
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.LSTM(8),
                                  keras.layers.Dense(3)])
        model.compile(keras.optimizers.SGD(0.1))
        model.optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function
    def train_step(xb, yb):
        def replica(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True)) / batch
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        strategy.run(replica, args=(xb, yb))

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).with_options(options)
    data = strategy.experimental_distribute_dataset(data)
    callback = tgp.GradualPruning(tgp.RampedThresholdSchedule(
        6, 24, 60, 3, target_sparsity=0.8, allocation="uniform"))
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(6):
        for index, (xb, yb) in enumerate(data):
            callback.on_train_batch_begin(index)
            train_step(xb, yb)
            callback.on_train_batch_end(index, {})
        callback.on_epoch_end(epoch, {})
    callback.on_train_end()
    out = [np.asarray(keras.ops.convert_to_numpy(i.variable)).tolist()
           for i in tgp.find_prunable_weights(model)]
    print("RESULT" + json.dumps(out))
    """
)


def free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@TF_ONLY
def test_multi_worker_mirrored_two_processes_on_localhost():
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, os.path.join(REPO, "tests")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        ))
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            lines = [line for line in out.splitlines() if line.startswith("RESULT")]
            assert lines, err[-4000:]
            results.append(json.loads(lines[0][len("RESULT"):]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    single = run_script(WORKER, os.path.join(REPO, "tests"))
    for chief, worker, alone in zip(*results, single):
        chief, worker, alone = np.array(chief), np.array(worker), np.array(alone)
        np.testing.assert_array_equal(chief, worker)  # identical on both workers
        assert np.mean(chief == 0) == pytest.approx(0.8, abs=0.02)
        # Same global batch on one process: equal up to all-reduce rounding.
        np.testing.assert_allclose(chief, alone, atol=1e-5)
        assert np.mean((chief == 0) == (alone == 0)) > 0.995
