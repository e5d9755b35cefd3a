"""Data modules, one per kind of data (chat records for SFT, prompts for GRPO, raw text), on the DataModule base
(data/base.py: what train() reads, exact resume); records -> chat messages -> token ids with label masks."""

from quantum_ft.data.formats import DataFormatError
from quantum_ft.data.prompts import PromptDataModule
from quantum_ft.data.sft import SFTDataModule
from quantum_ft.data.text import TextDataModule

__all__ = ["DataFormatError", "PromptDataModule", "SFTDataModule", "TextDataModule"]
