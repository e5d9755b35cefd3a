"""Generic helpers (no import of any other quantum_ft package): dtypes, paths, atomic writes, configs, model modes,
chat prompts, padding and greedy generation. Each exists once here; every room uses these."""
