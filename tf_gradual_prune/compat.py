"""Optional packages that must match the installed TensorFlow.

Import it explicitly (`from tf_gradual_prune import compat`). The library
supports TensorFlow 2.16-2.21 (Keras 3). tfmot runs on tf-keras,
and a tf-keras release works with the TensorFlow of its own minor version
only. pip keeps the two in step by changing TensorFlow: installing the
`[tfmot]` extra beside TensorFlow 2.17 picks the newest tf-keras and with it
a newer TensorFlow, unless the command names the matching tf-keras
(`pip install 'tf-gradual-prune[tfmot]' 'tf-keras~=2.17.0'`, or this
project's constraints files). `require_tfmot` checks the pair at run time.
"""

import importlib.metadata

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
