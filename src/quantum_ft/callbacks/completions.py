"""A table of sampled completions with their rewards every N steps: a reward curve says less than the circuits
it was earned with. Appended to a CSV, and shown in TensorBoard (text) and W&B (a table) when those loggers are on.
Stages without rollouts (SFT) are left alone."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


class CompletionsTable(L.Callback):
    def __init__(self, every_n_steps: int = 10, rows: int = 8, max_chars: int = 2000, output_file: str | None = None):
        if every_n_steps < 1 or rows < 1:
            raise ValueError(f"CompletionsTable needs every_n_steps >= 1 and rows >= 1, got {every_n_steps}, {rows}.")
        self.every_n_steps, self.rows, self.max_chars = every_n_steps, rows, max_chars
        self.output_file = Path(output_file) if output_file else None
        self._logged: object = None  # the rollouts last shown: reused rollouts (num_iterations > 1) are not repeated

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        rollouts = getattr(pl_module, "last_rollouts", None)
        step = trainer.global_step
        if not rollouts or step % self.every_n_steps or rollouts is self._logged:
            return
        self._logged = rollouts
        rows = [_clip(r, self.max_chars) for r in rollouts[: self.rows]]
        names = list(rows[0])
        if self.output_file:
            self._append_csv(step, names, rows)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if type(logger).__name__ == "TensorBoardLogger" and hasattr(experiment, "add_text"):
                experiment.add_text("train/completions", _markdown(names, rows), global_step=step)
            elif type(logger).__name__ == "WandbLogger":
                data = [[step, *r.values()] for r in rows]
                logger.log_table("train/completions", columns=["step", *names], data=data)

    def _append_csv(self, step: int, names: list[str], rows: list[dict[str, Any]]) -> None:
        self.output_file.parent.mkdir(parents=True, exist_ok=True)
        new = not self.output_file.is_file()
        with self.output_file.open("a", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", *names])
            if new:
                writer.writeheader()
            writer.writerows({"step": step, **r} for r in rows)


def _clip(row: dict[str, Any], max_chars: int) -> dict[str, Any]:
    return {k: (v[:max_chars] + " ..." if isinstance(v, str) and len(v) > max_chars else v) for k, v in row.items()}


def _markdown(names: list[str], rows: list[dict[str, Any]]) -> str:
    """TensorBoard renders text as Markdown: a table, with the completions' newlines kept as line breaks."""

    def cell(v: Any) -> str:
        text = f"{v:.3f}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(r[n]) for n in names) + " |" for r in rows]
    return "\n".join(lines)
