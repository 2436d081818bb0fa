"""The package's version (one place: the package, the exporter's sidecar
and setup.cfg read it here)."""

__version__ = "0.2.0"
