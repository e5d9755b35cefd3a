"""Solvers by short name or dotted class path, so a config can say `solver: qaoa` or give Hydra's `_target_`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .cloud import CloudSolver
from .qaoa import QaoaSolver
from .solvers import AnnealingSolver, ExactSolver, Solver

SOLVERS: dict[str, type[Solver]] = {
    "exact": ExactSolver,
    "annealing": AnnealingSolver,
    "qaoa": QaoaSolver,
    "cloud": CloudSolver,
}


def make_solver(spec: str | Mapping[str, Any] | Solver, **kwargs: Any) -> Solver:
    """A Solver from a registry name ("qaoa"), a dotted class path, a mapping with `_target_` (or `name`) plus
    keyword arguments (a Hydra node), or an existing Solver (returned as is). `kwargs` override the mapping's."""
    if isinstance(spec, Solver):
        return spec
    if isinstance(spec, Mapping):
        args = {k: v for k, v in spec.items() if k not in ("_target_", "name")}
        target = spec.get("_target_", spec.get("name"))
        if target is None:
            raise ValueError(f"make_solver: a solver mapping needs `_target_` or `name`, got keys {sorted(spec)}")
        return make_solver(str(target), **{**args, **kwargs})
    if spec in SOLVERS:
        return SOLVERS[spec](**kwargs)
    module, _, cls_name = spec.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name, None) if module else None
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise ValueError(
            f"make_solver: unknown solver {spec!r}; use one of {', '.join(SOLVERS)} or a dotted path to a Solver class"
        )
    return cls(**kwargs)
