"""quantum_ft: Hydra-composed fine-tuning of language models with classical and quantum-circuit adapters."""

__version__ = "0.1.0"

from quantum_ft.utils.quiet import quiet_log_lines as _quiet_log_lines

_quiet_log_lines()
