"""tf_gradual_prune: prune recurrent networks during training (Keras 3).

The rule of Narang et al., "Exploring Sparsity in Recurrent Neural Networks"
(ICLR 2017): a magnitude threshold that ramps up in two linear phases, masks
that only grow, every weight below the threshold zeroed.
"""

# Imported for its side effect too: it registers the package's Keras objects
# (CTCModel, TiedEmbedding, Perplexity), so `keras.saving.load_model` finds
# them after `import tf_gradual_prune`.
from tf_gradual_prune import models
from tf_gradual_prune.callbacks import GradualPruning
from tf_gradual_prune.export import ExportReport, export_tflite
from tf_gradual_prune.masking import (
    KINDS,
    PrunableWeight,
    SparsityTable,
    find_prunable_weights,
    sparsity_table,
)
from tf_gradual_prune.runtime import LiteRTRunner, StreamingRunner
from tf_gradual_prune.schedules import RampedThresholdSchedule
from tf_gradual_prune.streaming import streaming_model
from tf_gradual_prune.version import __version__

__all__ = [
    "ExportReport",
    "GradualPruning",
    "KINDS",
    "LiteRTRunner",
    "PrunableWeight",
    "RampedThresholdSchedule",
    "SparsityTable",
    "StreamingRunner",
    "export_tflite",
    "find_prunable_weights",
    "models",
    "sparsity_table",
    "streaming_model",
    "__version__",
]
