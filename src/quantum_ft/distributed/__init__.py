"""Running a stage on several processes: DiLoCo's and metered DDP's strategies, FSDP's wrap policy. The `distributed`
config group (none / ddp / diloco) selects a strategy and its callbacks; `stage=diloco` and `stage=ddp` choose it."""

from quantum_ft.distributed.sharding import TransformerBlockPolicy, clean_parameter_name
from quantum_ft.distributed.strategies import CommunicationMeter, DiLoCoStrategy, MeteredDDPStrategy

__all__ = [
    "CommunicationMeter",
    "DiLoCoStrategy",
    "MeteredDDPStrategy",
    "TransformerBlockPolicy",
    "clean_parameter_name",
]
