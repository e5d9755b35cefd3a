"""quantum_ft: Hydra-composed fine-tuning of language models with classical and quantum-circuit adapters."""

__version__ = "0.1.0"
