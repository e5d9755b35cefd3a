"""What a run leaves behind: the final artifact (adapter or full model, tokenizer, resolved config, base-model
reference) and checkpoints written atomically and read back without unpickling."""

from quantum_ft.artifacts.artifact import find_artifact, is_artifact, read_artifact_config, save_artifact
from quantum_ft.artifacts.checkpoint_io import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO", "find_artifact", "is_artifact", "read_artifact_config", "save_artifact"]
