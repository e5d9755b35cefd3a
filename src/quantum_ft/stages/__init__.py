"""Training stages: one LightningModule each, siblings on `StageModule` (stages/base.py). The distributed ways of
running them (DiLoCo, metered DDP, FSDP's wrap policy) are in quantum_ft.distributed."""

from quantum_ft.stages.base import StageModule
from quantum_ft.stages.grpo import GRPOModule
from quantum_ft.stages.sft import SFTModule

__all__ = ["GRPOModule", "SFTModule", "StageModule"]
