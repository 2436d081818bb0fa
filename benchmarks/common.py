"""What every benchmark script saves beside its figures."""

import json
import os
import platform

from tf_gradual_prune import files


def software_versions():
    import keras
    import tensorflow as tf

    import tf_gradual_prune

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_gradual_prune": tf_gradual_prune.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def save_results(prefix, command, settings, rows, markdown):
    """Writes `prefix.json` (rows, settings, versions) and `prefix.md`."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    meta = {
        "command": command,
        "settings": settings,
        "versions": software_versions(),
        "rows": rows,
    }
    files.write_atomic(prefix + ".json", json.dumps(meta, indent=2))
    files.write_atomic(prefix + ".md", markdown + "\n")
