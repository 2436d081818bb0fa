import keras
import numpy as np
import pytest

from tf_gradual_prune import GradualPruning, RampedThresholdSchedule, models, streaming_model
from tf_gradual_prune.streaming import zero_states

L = keras.layers
RNG = np.random.default_rng(0)


def run_chunks(step, frames, chunk, states=None):
    """Feeds `frames` (1, T, F) to `step` chunk by chunk; returns each chunk's outputs."""
    states = zero_states(step) if states is None else states
    outputs = []
    for start in range(0, frames.shape[1], chunk):
        result = step([frames[:, start : start + chunk]] + states)
        result = [keras.ops.convert_to_numpy(t) for t in result]
        outputs.append(result[0])
        states = result[1:]
    return outputs, states


def with_statistics(model):
    """Gives batch normalisation non-trivial moving statistics."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            size = layer.moving_mean.shape[0]
            layer.set_weights([RNG.uniform(0.5, 1.5, size), RNG.normal(size=size),
                               RNG.normal(size=size), RNG.uniform(0.5, 1.5, size)])
    return model


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("mask_padding", [True, False])
@pytest.mark.parametrize("chunk", [3, 12])
def test_speech_model_streamed_equals_offline(rnn, mask_padding, chunk):
    model = with_statistics(models.speech_model(
        6, 4, rnn=rnn, units=8, layers=2, conv_filters=5, bidirectional=False,
        mask_padding=mask_padding))
    step = streaming_model(model, chunk)
    frames = RNG.normal(size=(1, 4 * chunk, 6)).astype("float32")
    outputs, _ = run_chunks(step, frames, chunk)
    assert all(o.shape == (1, chunk // 3, 5) for o in outputs)
    offline = keras.ops.convert_to_numpy(model(frames))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), offline, atol=1e-5)
    # The carried state matters: a stream that drops it after the first chunk differs.
    restarted = [run_chunks(step, frames[:, s : s + chunk], chunk)[0][0]
                 for s in range(0, frames.shape[1], chunk)]
    assert np.abs(np.concatenate(restarted, axis=1) - offline).max() > 1e-3


def test_step_inputs_outputs_and_names():
    model = models.speech_model(6, 4, rnn="lstm", units=8, layers=2, conv_filters=5,
                                conv_kernel=7, conv_stride=3, bidirectional=False)
    step = streaming_model(model, 9)
    assert step.name == "speech_streaming"
    lstm = [layer.name for layer in model.layers if isinstance(layer, L.LSTM)]
    conv = next(layer.name for layer in model.layers if isinstance(layer, L.Conv1D))
    assert [t.name for t in step.inputs] == ["chunk", f"{conv}_buffer"] + [
        f"{name}_{s}" for name in lstm for s in ("h", "c")]
    # The buffer keeps the kernel - 1 input frames the next chunk's first output reads.
    assert [tuple(t.shape) for t in step.inputs] == [(1, 9, 6), (1, 6, 6)] + [(1, 8)] * 4
    assert [tuple(t.shape) for t in step.outputs] == [(1, 3, 5), (1, 6, 6)] + [(1, 8)] * 4


def test_causal_conv_and_last_output_classifier():
    model = keras.Sequential([
        keras.Input((None, 4)),
        L.Conv1D(6, 3, padding="causal", dilation_rate=2),
        L.LayerNormalization(),
        L.SimpleRNN(5),
        L.Dense(3),
        L.Softmax(),
    ])
    step = streaming_model(model, 4)
    frames = RNG.normal(size=(1, 20, 4)).astype("float32")
    outputs, _ = run_chunks(step, frames, 4)
    # Each call returns the classifier's answer so far; the last is the offline one.
    np.testing.assert_allclose(outputs[-1], keras.ops.convert_to_numpy(model(frames)), atol=1e-5)
    np.testing.assert_allclose(outputs[1], keras.ops.convert_to_numpy(model(frames[:, :8])),
                               atol=1e-5)


def test_pruned_zeros_stay_zeros():
    keras.utils.set_random_seed(0)
    model = models.speech_model(6, 4, units=8, layers=1, conv_filters=5, bidirectional=False)
    model.compile(optimizer="adam")
    x = RNG.normal(size=(8, 12, 6)).astype("float32")
    y = np.ones((8, 2), "int32")
    schedule = RampedThresholdSchedule(1, 2, 3, 1, target_sparsity=0.8, allocation="uniform")
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[GradualPruning(schedule)])
    step = streaming_model(model, 6)
    gru = next(layer for layer in step.layers if isinstance(layer, L.GRU))
    kernel = keras.ops.convert_to_numpy(gru.cell.kernel)
    assert 0.75 <= np.mean(kernel == 0) <= 0.85
    original = next(layer for layer in model.layers if isinstance(layer, L.GRU))
    np.testing.assert_array_equal(kernel, keras.ops.convert_to_numpy(original.cell.kernel))


def sequential(*layers):
    return keras.Sequential([keras.Input((None, 4)), *layers])


@pytest.mark.parametrize(
    "model, chunk, match",
    [
        (models.speech_model(4, 3, units=4, layers=1, conv_filters=4), 9,
         r"Bidirectional\).*bidirectional=False"),
        (sequential(L.GRU(3, go_backwards=True)), 2, "go_backwards=True"),
        (sequential(L.Conv1D(3, 3, padding="same")), 2, "padding='same' reads frames after"),
        (sequential(L.ZeroPadding1D((2, 1)), L.Conv1D(3, 3)), 2, r"pads 1 frame\(s\) on the right"),
        (sequential(L.ZeroPadding1D((2, 0)), L.GRU(3)), 2, "right before a Conv1D"),
        (sequential(L.Conv1D(3, 5, strides=2)), 2, r"padded by 0 frame\(s\).*between 3 and 4"),
        (sequential(L.Conv1D(3, 3, strides=3, padding="causal")), 4,
         "as 4 frames, not a multiple of its stride 3"),
        (sequential(L.MaxPooling1D(2)), 2, "may mix frames"),
        (sequential(L.Cropping1D((1, 0))), 2, "may mix frames"),
        (sequential(L.GRU(3), L.Dense(2), L.Reshape((1, 2))), 2, "returns only its last output"),
        (sequential(L.GRU(3)), 0, "chunk_frames=0"),
    ],
)
def test_what_cannot_stream_is_refused_with_the_reason(model, chunk, match):
    with pytest.raises(ValueError, match=match):
        streaming_model(model, chunk)


@pytest.mark.parametrize("chunk, match", [(True, "chunk_frames=True"),
                                          (2.0, r"chunk_frames=2.0")])
def test_a_chunk_that_is_not_an_integer_is_a_type_error(chunk, match):
    with pytest.raises(TypeError, match=match):
        streaming_model(sequential(L.GRU(3)), chunk)


def test_models_that_are_not_a_chain_are_refused():
    a, b = keras.Input((None, 4)), keras.Input((None, 4))
    joined = keras.Model([a, b], L.GRU(3)(L.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="2 inputs and 1 outputs"):
        streaming_model(joined, 2)
    x = keras.Input((None, 4))
    branched = keras.Model(x, L.Add()([L.Dense(4)(x), x]))
    with pytest.raises(ValueError, match="takes several tensors"):
        streaming_model(branched, 2)
    fixed = keras.Sequential([keras.Input((None,)), L.Embedding(10, 4), L.GRU(3)])
    with pytest.raises(ValueError, match=r"fixed number of features"):
        streaming_model(fixed, 2)
