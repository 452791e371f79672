"""Builder of the CPUShare live CD: Debian packages + templates + overlays -> hybrid ISO."""

__version__ = "0.1.0"
