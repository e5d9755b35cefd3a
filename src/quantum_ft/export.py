"""`python -m quantum_ft.export RUN_DIR --out DIR`: fold a trained adapter into the base weights and write a
standalone Hugging Face model directory (loadable with AutoModelForCausalLM, no peft needed)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from quantum_ft.utils.artifact import load_trained

log = logging.getLogger(__name__)


def export(run_dir: str | Path, out: str | Path) -> Path:
    """Merge in full precision: a QLoRA adapter is folded into the de-quantised (not the 4-bit) base."""
    model, tokenizer, adapter, _ = load_trained(run_dir, quantized=False)
    merged = adapter.merge(model)
    out = Path(out)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quantum_ft.export", description=__doc__)
    parser.add_argument("run_dir", help="a training run's output directory (or its artifact/ folder)")
    parser.add_argument("--out", required=True, help="where to write the merged model")
    args = parser.parse_args(argv)
    with torch.no_grad():
        out = export(args.run_dir, args.out)
    print(f"Merged model written to {out} (load it with AutoModelForCausalLM.from_pretrained).")


if __name__ == "__main__":
    main()
