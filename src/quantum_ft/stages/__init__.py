"""Training stages: one LightningModule each."""

from quantum_ft.stages.diloco import DiLoCo, DiLoCoStrategy, LogCommunication, MeteredDDPStrategy
from quantum_ft.stages.grpo import GRPOModule
from quantum_ft.stages.sft import CausalLMModule, SFTModule

__all__ = [
    "CausalLMModule",
    "DiLoCo",
    "DiLoCoStrategy",
    "GRPOModule",
    "LogCommunication",
    "MeteredDDPStrategy",
    "SFTModule",
]
