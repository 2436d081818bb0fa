"""Streaming versions of unidirectional recurrent models.

On a device, speech arrives as it is spoken: an app feeds the model a few
frames at a time and carries the recurrent state from one call to the next.
`streaming_model` rebuilds a trained Keras model as such a step: it takes a
chunk of frames and the state tensors, and returns the outputs for that
chunk and the new state tensors. Run chunk after chunk from zero states, it
computes what the offline model computes over the whole sequence (the
export checks this before writing, see `export_tflite(streaming=...)`).

What streams:
- recurrent layers (`LSTM`, `GRU`, `SimpleRNN`, `RNN` over a cell) that read
  forwards; their states become inputs and outputs of the step;
- `Conv1D` front ends that look only backwards (`padding="causal"`, or
  `"valid"` after a `ZeroPadding1D` with no right padding): the last input
  frames they still need become a state (a buffer), and the chunk must be a
  multiple of their stride;
- layers that act on each frame alone (`Dense`, `BatchNormalization`,
  `LayerNormalization` over features, activations, dropout,
  `TimeDistributed`).
Masks passed to the recurrent layers (`PaddingMask`) are dropped: a stream
has no padding. A bidirectional layer reads the sequence backwards from its
end, which a stream does not have yet, so it is refused, as is any layer
that mixes frames in a way this module does not know.
"""

import keras
import numpy as np

from tf_gradual_prune import checks

#: Layers that act on every frame alone, whatever the frames around it.
_FRAME_WISE = (
    keras.layers.Dense,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.TimeDistributed,
)

#: Names of the state tensors of the built-in recurrent layers.
_STATE_NAMES = {keras.layers.LSTM: ("h", "c"), keras.layers.GRU: ("h",),
                keras.layers.SimpleRNN: ("h",)}


def _refuse(layer, why):
    raise ValueError(
        f"Layer {layer.name!r} ({type(layer).__name__}) cannot stream: {why}"
    )


def layer_chain(model):
    """The model's layers from input to output, each with its call's other
    keyword arguments (a `mask=` is dropped), for a model that is a chain:
    one input, one output, and every layer called on the previous layer's
    output. Raises ValueError for any other model."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs: only a chain of layers with one "
            "input (the frames) and one output can stream or shrink."
        )
    if isinstance(model, keras.Sequential):
        return [(layer, {}) for layer in model.layers]
    chain = []
    tensor = model.outputs[0]
    while True:
        operation, node_index, _ = tensor._keras_history
        if isinstance(operation, keras.layers.InputLayer):
            break
        node = operation._inbound_nodes[node_index]
        args, kwargs = node.arguments.args, node.arguments.kwargs
        extra = [a for a in keras.tree.flatten(args[1:]) if isinstance(a, keras.KerasTensor)]
        if not args or not isinstance(args[0], keras.KerasTensor) or extra:
            raise ValueError(
                f"Layer {operation.name!r} of model {model.name!r} takes several "
                "tensors: only a chain of layers (each called on the previous "
                "one's output) can stream or shrink."
            )
        unknown = sorted(
            k for k, v in kwargs.items()
            if k != "mask" and any(isinstance(a, keras.KerasTensor) for a in keras.tree.flatten(v))
        )
        if unknown:
            raise ValueError(
                f"Layer {operation.name!r} is called with tensors as {unknown}: only a "
                "chain of layers can stream or shrink."
            )
        chain.append((operation, {k: v for k, v in kwargs.items()
                                  if k not in ("mask", "training")}))
        tensor = args[0]
    return chain[::-1]


def _frame_wise(layer):
    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        return list(axes) in ([-1], [2])
    return isinstance(layer, _FRAME_WISE)


def _conv_step(layer, x, frames, left, states_in, states_out):
    """A `Conv1D` over a buffer of its last `left` input frames and the chunk."""
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        _refuse(layer, "only data_format='channels_last' streams.")
    if config["groups"] != 1:
        _refuse(layer, "grouped convolutions are not supported.")
    kernel = (config["kernel_size"][0] - 1) * config["dilation_rate"][0] + 1
    stride = config["strides"][0]
    if config["padding"] == "causal":
        left = kernel - 1
    elif config["padding"] != "valid":
        _refuse(layer, f"padding={config['padding']!r} reads frames after the "
                "current one; build the front end with padding='causal' (or "
                "ZeroPadding1D((kernel - 1, 0)) and padding='valid').")
    if not kernel - stride <= left <= kernel - 1:
        _refuse(layer, f"it is padded by {left} frame(s) on the left; a stream "
                f"can carry between {max(0, kernel - stride)} and {kernel - 1} "
                f"(kernel {kernel}, stride {stride}).")
    if frames % stride:
        raise ValueError(
            f"The chunk reaches layer {layer.name!r} as {frames} frames, not a "
            f"multiple of its stride {stride}: choose `chunk_frames` so that "
            "every strided layer divides it."
        )
    conv = type(layer).from_config({**config, "padding": "valid"})
    if left:
        buffer = keras.Input((left, x.shape[-1]), batch_size=1, name=f"{layer.name}_buffer")
        x = keras.layers.Concatenate(axis=1)([buffer, x])
        states_in.append(buffer)
        # The last `left` frames seen are what the next chunk's first outputs read.
        states_out.append(keras.layers.Cropping1D((frames, 0))(x))
    y = conv(x)
    conv.set_weights(layer.get_weights())
    return y, frames // stride


def _rnn_step(layer, x, states_in, states_out):
    """The recurrent layer, its state in and out."""
    config = layer.get_config()
    if config.get("go_backwards"):
        _refuse(layer, "go_backwards=True reads the sequence from its end, "
                "which a stream does not have yet.")
    names = _STATE_NAMES.get(type(layer))
    if names is None:
        sizes = layer.cell.state_size
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
        names = tuple(f"state{i}" for i in range(len(sizes)))
    else:
        sizes = [layer.units] * len(names)
    for size in sizes:
        if not isinstance(size, (int, np.integer)):
            _refuse(layer, f"its cell's state of size {size!r} is not a vector.")
    rnn = type(layer).from_config({**config, "return_state": True, "stateful": False})
    inputs = [
        keras.Input((int(size),), batch_size=1, name=f"{layer.name}_{name}")
        for size, name in zip(sizes, names)
    ]
    outputs = rnn(x, initial_state=inputs if len(inputs) > 1 else inputs[0])
    rnn.set_weights(layer.get_weights())
    states_in.extend(inputs)
    states_out.extend(outputs[1:])
    return outputs[0]


def streaming_model(model, chunk_frames):
    """The model as one step of a stream: a chunk and the state in, out the
    outputs of the chunk and the new state.

    The returned Keras model takes `[chunk, *states]` and returns
    `[outputs, *new_states]`, batch 1: `chunk` has shape `(1,
    chunk_frames, features)`, each state its own shape (the recurrent
    layers' `h` and `c`, the convolution buffers), the new states the same
    shapes in the same order. Start a stream with zero states and pass each
    call's new states to the next. Over whole chunks this equals the
    offline model on the concatenated frames: frame for frame where the
    output is a sequence, and the last chunk's output where a recurrent layer
    returns only its last output. The weights are the model's (copied),
    sparse zeros included.

    Args:
        model: A built Keras model (Sequential or functional chain) whose
            recurrent layers read forwards and whose convolutions look only
            backwards; see the module docstring for what streams.
        chunk_frames: Integer >= 1. Input frames per call; a multiple of
            every stride in the model (the step returns `chunk_frames /
            strides` output frames).

    Returns:
        A `keras.Model` named `<model.name>_streaming`.

    Raises:
        ValueError: for a model with a layer that cannot stream (named with
            the reason: bidirectional, backwards, looks ahead, mixes frames,
            several inputs), or a `chunk_frames` that is not a positive
            multiple of the strides.

    Example:

    ```python
    step = tf_gradual_prune.streaming_model(model, chunk_frames=12)
    states = [np.zeros(s.shape, "float32") for s in step.inputs[1:]]
    for chunk in np.split(frames, len(frames) // 12):
        logits, *states = step([chunk[None]] + states)
    ```
    """
    checks.check_int("chunk_frames", chunk_frames, 1)
    chain = layer_chain(model)
    features = tuple(model.inputs[0].shape[2:])
    if len(model.inputs[0].shape) != 3 or any(d is None for d in features):
        raise ValueError(
            f"Model {model.name!r} takes inputs of shape {tuple(model.inputs[0].shape)}: "
            "a stream needs (batch, frames, features) with a fixed number of features."
        )
    for layer, _ in chain:
        # Checked first: whatever else a bidirectional model has, this is why it cannot stream.
        if isinstance(layer, keras.layers.Bidirectional):
            _refuse(layer, "a bidirectional layer reads every sequence backwards "
                    "from its end, which a stream does not have yet. Build the "
                    "model with unidirectional layers (for the speech model: "
                    "`speech_model(..., bidirectional=False)`).")
    chunk = keras.Input((int(chunk_frames),) + features, batch_size=1, name="chunk")
    states_in, states_out = [], []
    x, frames, left, sequence = chunk, int(chunk_frames), None, True
    for i, (layer, kwargs) in enumerate(chain):
        if left is not None and not isinstance(layer, keras.layers.Conv1D):
            _refuse(chain[i - 1][0], "zero padding streams only right before a Conv1D.")
        if not sequence and not _frame_wise(layer):
            _refuse(layer, "it follows a recurrent layer that returns only its last output.")
        if kwargs:
            _refuse(layer, f"it is called with arguments {sorted(kwargs)} that a stream "
                    "cannot pass on.")
        if isinstance(layer, keras.layers.ZeroPadding1D):
            before, after = layer.padding
            if after:
                _refuse(layer, f"it pads {after} frame(s) on the right, so the "
                        "layer after it reads frames that have not arrived.")
            left = before
        elif isinstance(layer, keras.layers.Conv1D) and not isinstance(
                layer, keras.layers.Conv1DTranspose):
            x, frames = _conv_step(layer, x, frames, left or 0, states_in, states_out)
            left = None
        elif isinstance(layer, keras.layers.RNN):
            x = _rnn_step(layer, x, states_in, states_out)
            sequence = layer.return_sequences
        elif _frame_wise(layer):
            x = layer(x)
        elif not isinstance(layer, keras.layers.InputLayer):
            _refuse(layer, "it may mix frames (only recurrent layers, backward-"
                    "looking Conv1D and frame-wise layers stream).")
    if left is not None:
        _refuse(chain[-1][0], "zero padding streams only right before a Conv1D.")
    return keras.Model([chunk] + states_in, [x] + states_out, name=f"{model.name}_streaming")


def zero_states(step):
    """Zero arrays for the state inputs of a `streaming_model` step."""
    return [np.zeros(tuple(t.shape), "float32") for t in step.inputs[1:]]
