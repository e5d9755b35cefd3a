"""Training stages: one LightningModule each."""

from quantum_ft.stages.sft import SFTModule

__all__ = ["SFTModule"]
