"""Records -> chat messages -> token ids with label masks -> batches."""

from quantum_ft.data.datamodule import SFTDataModule
from quantum_ft.data.formats import DataFormatError
from quantum_ft.data.prompts import PromptDataModule
from quantum_ft.data.text import TextDataModule

__all__ = ["DataFormatError", "PromptDataModule", "SFTDataModule", "TextDataModule"]
