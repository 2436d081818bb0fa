"""Writing files whole or not at all (temporary file, then rename)."""

import os
import secrets
import stat


def _temporary(path, suffix):
    """`(handle, name)` of a new file beside `path`, with the permissions
    `path` will need: those of the file it replaces, or else those of any
    newly created file (0666 less the umask). `tempfile.mkstemp` would make
    it 0600, and the rename would keep that."""
    folder = os.path.dirname(os.path.abspath(path))
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".tfgp_{secrets.token_hex(6)}{suffix}")
        try:
            handle = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
        except FileExistsError:
            continue
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(handle)
            os.remove(tmp)
            raise
        return handle, tmp
    raise FileExistsError(f"No free temporary name in {folder!r}.")


def write_atomic(path, content):
    """Writes `content` (str or bytes) to `path` via a temporary file.

    A reader never sees a half-written file, and a failure leaves none. The
    file gets the permissions a plain `open(path, "w")` would give it.
    """
    handle, tmp = _temporary(path, ".tmp")
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

    handle, tmp = _temporary(path, ".png")
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
