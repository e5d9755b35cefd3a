"""`python -m quantum_ft.data_stats [data=...] [model=...]`: what the configured data becomes after
normalising, mixing, splitting and tokenising (records, samples, tokens, truncated samples), without
loading the model's weights. Takes the same overrides as training."""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from quantum_ft.data.base import Stats
from quantum_ft.utils.config import config_path


def data_stats(cfg: DictConfig) -> Stats:
    tokenizer = instantiate(cfg.model).load_tokenizer()
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    datamodule.setup("fit")
    return datamodule.stats


@hydra.main(version_base="1.3", config_path=config_path(), config_name="train")
def main(cfg: DictConfig) -> None:
    stats = data_stats(cfg)
    print(f"data={cfg.data.datasets}  cutoff_len={cfg.data.cutoff_len}\n{stats.table()}")


if __name__ == "__main__":
    main()
