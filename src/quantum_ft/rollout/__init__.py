"""Where GRPO's completions are sampled: in the trainer's process (`sample_completions`, the default) or on Ray
rollout actors that hold a copy of the policy (`rollout=ray`, RayRollouts). Both draw a slice's completions from
the same seed, so they give the same rollouts."""

from quantum_ft.rollout.sampling import sample_completions

__all__ = ["sample_completions"]
