"""Lightning callbacks specific to this project (the stock ones are configured in conf/callbacks/)."""

from quantum_ft.callbacks.samples import SampleGenerations

__all__ = ["SampleGenerations"]
