"""`python -m quantum_ft.export RUN_DIR --out DIR`: fold a trained adapter into the base weights and write a
standalone Hugging Face model directory (loadable with AutoModelForCausalLM, no peft needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from quantum_ft.models.build import from_checkpoint
from quantum_ft.utils.config import ConfigError


def export(run_dir: str | Path, out: str | Path) -> Path:
    """Merge in full precision: a QLoRA adapter is folded into the de-quantised (not the 4-bit) base."""
    built = from_checkpoint(Path(run_dir).expanduser(), quantized=False)
    if built.adapter is None:
        raise ConfigError(f"{run_dir} is an exported model already: there is no adapter to merge.")
    merged = built.adapter.merge(built.model)
    out = Path(out)
    merged.save_pretrained(out)
    built.tokenizer.save_pretrained(out)
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
