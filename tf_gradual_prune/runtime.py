"""Running `.tflite` files with the LiteRT interpreter."""

import os
import time

import numpy as np

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
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(
                f"`num_threads` must be an integer >= 1. Received: "
                f"num_threads={num_threads!r}"
            )
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
        self.input_details = self.interpreter.get_input_details()
        self.output_details = self.interpreter.get_output_details()

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
