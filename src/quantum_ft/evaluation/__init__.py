"""Evaluation: k-shot multiple-choice exams (MMLU, CMMLU, C-Eval), held-out perplexity and ROUGE, and any
lm-evaluation-harness task on the same model (an optional extra)."""

from quantum_ft.evaluation.tasks import TASKS, flat_metrics, run_evaluation

__all__ = ["TASKS", "flat_metrics", "run_evaluation"]
