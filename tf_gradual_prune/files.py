"""Writing files whole or not at all (temporary file, then rename)."""

import os
import tempfile


def write_atomic(path, content):
    """Writes `content` (str or bytes) to `path` via a temporary file.

    A reader never sees a half-written file, and a failure leaves none.
    """
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tfgp_", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_figure(figure, path, dpi=100):
    """Saves a matplotlib figure as PNG at `path` atomically, then closes it."""
    import matplotlib.pyplot as plt

    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tfgp_", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        plt.close(figure)
    return path
