"""Running `.tflite` files with the LiteRT interpreter."""

import os
import re
import time

import numpy as np

from tf_gradual_prune import checks

#: Interpreter settings a report can recommend.
DELEGATES = ("xnnpack", "none")


def _interpreter_api():
    """`(Interpreter, OpResolverType)`: LiteRT's standalone runtime (the
    engine Android runs) when installed, else TensorFlow's `tf.lite`."""
    try:
        from ai_edge_litert import interpreter

        return interpreter.Interpreter, interpreter.OpResolverType
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType


def _position(key):
    """The argument position in a signature key (`args_0_2` -> 2,
    `output_1` -> 1, `args_0` -> 0), or `None`."""
    found = re.search(r"_(\d+)$", key)
    return int(found.group(1)) if found else None


def _signature_order(interpreter):
    """Input and output details in the order of the model's signature
    (Keras' order), with each detail's signature key added.

    The interpreter lists tensors in graph order, which for a model of
    several inputs or outputs is not the order they were defined in.
    """
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        return inputs, outputs
    key = next(iter(signatures))
    runner = interpreter.get_signature_runner(key)
    ordered = []
    for details, named in ((inputs, runner.get_input_details()),
                           (outputs, runner.get_output_details())):
        by_index = {d["index"]: d for d in details}
        keys = list(named)
        if all(_position(k) is not None for k in keys):
            keys.sort(key=_position)
        ordered.append([dict(by_index[named[k]["index"]], signature_key=k) for k in keys])
    return ordered[0], ordered[1]


class LiteRTRunner:
    """Loads a `.tflite` model and runs batches through it, one sample a call.

    The exported models take batch 1 (the on-device case); `run` feeds a
    batch sample by sample and stacks the outputs.

    Args:
        model: String path of a `.tflite` file, or its bytes.
        num_threads: Integer >= 1. Defaults to `1`.
        delegate: `"xnnpack"` (LiteRT's default delegate) or `"none"`
            (builtin kernels only). Sparse int8 models must use `"none"`: the
            XNNPACK delegate rejects or miscomputes them. Defaults to
            `"xnnpack"`.

    Raises:
        ValueError: for a missing file, a bad `delegate` or `num_threads`,
            or a model the interpreter cannot load (the message says why).

    Example:

    ```python
    runner = tf_gradual_prune.LiteRTRunner("model.tflite", delegate="none")
    outputs = runner.run(x_test)
    print(runner.latency_ms(x_test[:1]))
    ```
    """

    def __init__(self, model, num_threads=1, delegate="xnnpack"):
        if delegate not in DELEGATES:
            raise ValueError(
                f"`delegate` must be one of {DELEGATES}. Received: "
                f"delegate={delegate!r}"
            )
        checks.check_int("num_threads", num_threads, 1)
        interpreter_class, resolver_type = _interpreter_api()
        kwargs = {"num_threads": num_threads}
        if isinstance(model, (bytes, bytearray)):
            kwargs["model_content"] = bytes(model)
        else:
            if not os.path.isfile(model):
                raise ValueError(f"No .tflite file at {model!r}.")
            kwargs["model_path"] = model
        if delegate == "none":
            kwargs["experimental_op_resolver_type"] = (
                resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        try:
            self.interpreter = interpreter_class(**kwargs)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"The interpreter (delegate={delegate!r}) cannot load the "
                f"model: {error}"
            ) from None
        self.delegate = delegate
        self.num_threads = num_threads
        self.input_details, self.output_details = _signature_order(self.interpreter)

    def _feed(self, sample):
        arrays = sample if isinstance(sample, (list, tuple)) else [sample]
        if len(arrays) != len(self.input_details):
            raise ValueError(
                f"The model has {len(self.input_details)} inputs. Received "
                f"{len(arrays)} arrays."
            )
        for detail, array in zip(self.input_details, arrays):
            array = np.asarray(array, dtype=detail["dtype"])
            expected = tuple(detail["shape"])
            if array.shape != expected:
                raise ValueError(
                    f"Input {detail['name']!r} takes shape {expected}. "
                    f"Received an array of shape {array.shape}."
                )
            self.interpreter.set_tensor(detail["index"], array)

    def run_one(self, sample):
        """Runs one batch-1 sample; returns a list of outputs (batch 1)."""
        self._feed(sample)
        self.interpreter.invoke()
        return [
            self.interpreter.get_tensor(d["index"]).copy()
            for d in self.output_details
        ]

    def run(self, inputs):
        """Runs a batch, sample by sample.

        Args:
            inputs: An array of shape `(n, ...)`, or a list of such arrays
                for a model with several inputs.

        Returns:
            An array `(n, ...)` (a list of them for several outputs).
        """
        arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        count = len(arrays[0])
        outputs = [
            self.run_one([a[i : i + 1] for a in arrays]) for i in range(count)
        ]
        stacked = [np.concatenate(parts, axis=0) for parts in zip(*outputs)]
        return stacked[0] if len(stacked) == 1 else stacked

    def latency_ms(self, sample, repeats=50, warmup=5, rounds=5):
        """Median batch-1 latency in ms (median of `rounds` medians)."""
        self._feed(sample)
        for _ in range(warmup):
            self.interpreter.invoke()
        medians = []
        for _ in range(rounds):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                self.interpreter.invoke()
                times.append(time.perf_counter() - start)
            medians.append(float(np.median(times)))
        return 1000.0 * float(np.median(medians))


class StreamingRunner(LiteRTRunner):
    """Runs a streaming export chunk by chunk, carrying its state.

    A streaming `.tflite` (`export_tflite(..., streaming=True)`) takes a
    chunk of frames and the state tensors, and returns the outputs and the
    new state tensors, in that order. This runner keeps the state between
    `push` calls, from zeros after `reset`.

    Args:
        model: String path of a streaming `.tflite` file, or its bytes.
        num_threads: Integer >= 1. Defaults to `1`.
        delegate: `"xnnpack"` or `"none"`, as for `LiteRTRunner`. Defaults
            to `"xnnpack"`.

    Raises:
        ValueError: as `LiteRTRunner`, or for a model whose inputs after
            the first do not match its last outputs (not a streaming step).

    Example:

    ```python
    runner = tf_gradual_prune.StreamingRunner("stream.tflite")
    for chunk in chunks:              # each (chunk_frames, features)
        logits = runner.push(chunk)   # (1, output_frames, classes)
    ```
    """

    def __init__(self, model, num_threads=1, delegate="xnnpack"):
        super().__init__(model, num_threads=num_threads, delegate=delegate)
        count = len(self.input_details) - 1
        states_out = self.output_details[len(self.output_details) - count:]
        if count < 1 or len(self.output_details) <= count or any(
                tuple(i["shape"]) != tuple(o["shape"])
                for i, o in zip(self.input_details[1:], states_out)):
            raise ValueError(
                "Not a streaming model: its inputs after the first (the state) "
                "must match its last outputs (the new state). Inputs: "
                f"{[tuple(d['shape']) for d in self.input_details]}, outputs: "
                f"{[tuple(d['shape']) for d in self.output_details]}."
            )
        self.chunk_shape = tuple(int(d) for d in self.input_details[0]["shape"])
        self.state_count = count
        self.reset()

    def reset(self):
        """Zeroes the state: the next `push` starts a new stream."""
        self.states = [
            np.zeros(d["shape"], d["dtype"]) for d in self.input_details[1:]
        ]

    def push(self, chunk):
        """Runs one chunk; returns the outputs (one array, or a list).

        Args:
            chunk: Array `(chunk_frames, features)` or with the batch of 1.
        """
        chunk = np.asarray(chunk, dtype=self.input_details[0]["dtype"])
        if chunk.shape == self.chunk_shape[1:]:
            chunk = chunk[None]
        if chunk.shape != self.chunk_shape:
            raise ValueError(
                f"A chunk has shape {self.chunk_shape[1:]} (or {self.chunk_shape}). "
                f"Received an array of shape {chunk.shape}."
            )
        results = self.run_one([chunk] + self.states)
        self.states = results[len(results) - self.state_count:]
        outputs = results[: len(results) - self.state_count]
        return outputs[0] if len(outputs) == 1 else outputs

    def run_stream(self, frames):
        """Streams a whole sequence from a fresh state, chunk by chunk.

        The last chunk is padded with zero frames. Outputs that are
        sequences (rank >= 3) are joined along time; the others are the last
        chunk's.

        Args:
            frames: Array `(frames, features)`.

        Returns:
            An array (a list for several outputs).
        """
        frames = np.asarray(frames, dtype=self.input_details[0]["dtype"])
        size = self.chunk_shape[1]
        if frames.ndim != 2 or frames.shape[1:] != self.chunk_shape[2:] or not len(frames):
            raise ValueError(
                f"`frames` must have shape (n, {', '.join(map(str, self.chunk_shape[2:]))}) "
                f"with n >= 1. Received shape {frames.shape}."
            )
        padded = -len(frames) % size
        frames = np.concatenate([frames, np.zeros((padded,) + frames.shape[1:], frames.dtype)])
        self.reset()
        pushed = []
        for start in range(0, len(frames), size):
            out = self.push(frames[start : start + size])
            pushed.append(out if isinstance(out, list) else [out])
        joined = [
            np.concatenate(parts, axis=1) if parts[0].ndim >= 3 else parts[-1]
            for parts in zip(*pushed)
        ]
        return joined[0] if len(joined) == 1 else joined
