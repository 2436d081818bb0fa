"""Optional packages that must match the installed TensorFlow, and the parts
that need Keras' TensorFlow backend.

Import it explicitly (`from tf_gradual_prune import compat`). The pruning
core (schedules, masking, `GradualPruning`) runs on every Keras 3 backend
(TensorFlow, JAX, PyTorch); the TFLite export and the CTC recogniser's
training step are written in TensorFlow and check the backend with
`require_tensorflow_backend`. The library
supports TensorFlow 2.16-2.21 (Keras 3). tfmot runs on tf-keras,
and a tf-keras release works with the TensorFlow of its own minor version
only. pip keeps the two in step by changing TensorFlow: installing the
`[tfmot]` extra beside TensorFlow 2.17 picks the newest tf-keras and with it
a newer TensorFlow, unless the command names the matching tf-keras
(`pip install 'tf-gradual-prune[tfmot]' 'tf-keras~=2.17.0'`, or this
project's constraints files). `require_tfmot` checks the pair at run time.
"""

import importlib.metadata

import keras
import tensorflow as tf


def _installed(distribution):
    """The installed version of a distribution, or `None`."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _minor(version):
    return tuple(int(part) for part in version.split(".")[:2])


def require_tfmot():
    """tensorflow_model_optimization, after checking tf-keras against TensorFlow.

    Checks the installed versions before importing anything: pip keeps
    tf-keras and TensorFlow in step, but `--no-deps` or a manual install
    can leave them apart, which nothing else reports. Then imports tfmot,
    which sets `TF_USE_LEGACY_KERAS=1` in the process environment (this
    library's own code stays on Keras 3).

    Returns:
        The `tensorflow_model_optimization` module.

    Raises:
        ImportError: if tfmot or tf-keras is not installed (naming the
            `[tfmot]` extra), or if tf-keras's minor version differs from
            TensorFlow's (naming both versions and the `pip install` that
            fixes it).

    Example:

    ```python
    tfmot = tf_gradual_prune.compat.require_tfmot()
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, 100, 1000)
    ```
    """
    tensorflow = tf.__version__
    line = ".".join(str(part) for part in _minor(tensorflow))
    tf_keras = _installed("tf-keras")
    if _installed("tensorflow-model-optimization") is None or tf_keras is None:
        raise ImportError(
            "tfmot needs tensorflow-model-optimization and tf-keras of TensorFlow's "
            f"minor version: pip install 'tf-gradual-prune[tfmot]' 'tf-keras~={line}.0'"
        )
    if _minor(tf_keras) != _minor(tensorflow):
        raise ImportError(
            f"tf-keras {tf_keras} is installed with TensorFlow {tensorflow}; tfmot runs "
            "on tf-keras, which works only with the TensorFlow of its own minor "
            f"version. Install the matching one: pip install 'tf-keras~={line}.0' "
            "(or reinstall with this project's constraints file)."
        )
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def require_tensorflow_backend(what):
    """Checks that Keras runs on TensorFlow, for a part written in TensorFlow.

    Args:
        what: String. The part that needs it, for the message.

    Raises:
        RuntimeError: naming the backend in force and what to do instead:
            a model saved as `.keras` on any backend loads under the
            TensorFlow backend (another process, `KERAS_BACKEND=tensorflow`),
            pruned weights included.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} is written for Keras' TensorFlow backend; Keras runs on "
            f"{backend!r} here (KERAS_BACKEND={backend}). Save the model "
            "(`model.save('model.keras')`) and continue in a process started "
            "with KERAS_BACKEND=tensorflow: the `.keras` file loads there "
            "with its pruned weights."
        )
