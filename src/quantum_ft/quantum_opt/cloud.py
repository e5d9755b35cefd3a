"""The shape of a cloud quantum solver (D-Wave Leap, Azure Quantum): credential from an environment variable,
client package, endpoint, max_variables and a hard timeout.

Offline (no credential, or no client package) it fails at once with SolverUnavailable saying what is missing, so
solve_with_fallback answers classically. With both present, the submission runs in a daemon thread that is waited
on for at most the time budget: a slow or unreachable service can never stall training."""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .qubo import Qubo
from .solvers import Deadline, Solution, Solver, SolverTimeout, SolverUnavailable, to_bqm

Submit = Callable[[Qubo, str, "str | None", float], np.ndarray]  # (qubo, token, endpoint, timeout_s) -> x


@dataclass(frozen=True)
class Provider:
    name: str
    token_env: str  # where the credential is read from (never from a file or the config)
    package: str  # the client's import name
    pip: str  # what to install
    max_variables: int  # dense QUBO size the service takes
    submit: str | None  # "module:function" of the submitter; None: none written yet


PROVIDERS = {
    # Leap's hybrid BQM solvers take dense problems far beyond our adapter counts
    "dwave-leap": Provider(
        "dwave-leap", "DWAVE_API_TOKEN", "dwave.cloud", "dwave-cloud-client", 5000, f"{__name__}:dwave_leap_submit"
    ),
    # gate-model targets: one qubit per variable, QAOA compiled for the target (no submitter here yet)
    "azure-quantum": Provider(
        "azure-quantum", "AZURE_QUANTUM_CONNECTION_STRING", "azure.quantum", "azure-quantum", 25, None
    ),
}


def dwave_leap_submit(qubo: Qubo, token: str, endpoint: str | None, timeout_s: float) -> np.ndarray:
    """Sample the QUBO on a Leap hybrid BQM solver; the lowest-energy sample. Not exercised offline."""
    from dwave.cloud import Client

    with Client.from_config(token=token, endpoint=endpoint, request_timeout=timeout_s) as client:
        solver = client.get_solver(supported_problem_types__contains="bqm")
        sampleset = solver.sample_bqm(to_bqm(qubo)).sampleset
        best = sampleset.first.sample
    return np.array([best[i] for i in range(qubo.num_variables)], dtype=np.int8)


def _resolve(target: str | Submit) -> Submit:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"CloudSolver: submit must be a callable or 'module:function', got {target!r}")
    return getattr(importlib.import_module(module), attr)


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a missing parent package
        return False


class CloudSolver(Solver):
    """A cloud QUBO service. `provider` picks the defaults (token_env, package, max_variables, submitter); each can
    be overridden, and `submit` ("module:function" or a callable) replaces the submitter (tests, new services)."""

    def __init__(
        self,
        provider: str = "dwave-leap",
        endpoint: str | None = None,
        token_env: str | None = None,
        package: str | None = None,
        max_variables: int | None = None,
        timeout_s: float | None = 60.0,
        submit: str | Submit | None = None,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"CloudSolver: unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
        spec = PROVIDERS[provider]
        super().__init__(spec.max_variables if max_variables is None else max_variables, timeout_s)
        self.provider, self.endpoint = spec, endpoint
        self.token_env = token_env or spec.token_env
        self.package = package or spec.package
        self.submit = submit if submit is not None else spec.submit
        self.name = f"cloud-{provider}"

    def _solve(self, qubo: Qubo, deadline: Deadline) -> Solution:
        token = os.environ.get(self.token_env)
        if not token:
            raise SolverUnavailable(
                f"{self.name}: no credential: environment variable {self.token_env} is not set; set it to the "
                f"{self.provider.name} API token to use this solver"
            )
        if not _installed(self.package):
            raise SolverUnavailable(
                f"{self.name}: client package {self.package!r} is not installed; pip install {self.provider.pip}"
            )
        if self.submit is None:
            raise SolverUnavailable(
                f"{self.name}: no submitter is written for {self.provider.name} yet; pass submit='module:function'"
            )
        submit = _resolve(self.submit)
        budget = deadline.remaining()
        budget = 60.0 if budget is None else max(budget, 0.0)  # never wait without a bound
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["x"] = submit(qubo, token, self.endpoint, budget)
            except Exception as err:  # reported below as "not reachable / failed", with the cause
                box["error"] = err

        thread = threading.Thread(target=work, name=f"{self.name}-submit", daemon=True)
        thread.start()
        thread.join(budget)
        if thread.is_alive():
            raise SolverTimeout(f"{self.name}: no answer within {budget:.3g} s (service slow or not reachable)")
        if "error" in box:
            err = box["error"]
            raise SolverUnavailable(f"{self.name}: submission failed ({type(err).__name__}: {err})") from err
        x = np.asarray(box["x"], dtype=np.int8).reshape(-1)
        if x.shape != (qubo.num_variables,) or not np.all((x == 0) | (x == 1)):
            raise SolverUnavailable(f"{self.name}: the service returned {x.shape} values, not one bit per variable")
        return Solution(x, float(qubo.energy(x)), 0.0, self.name, {"provider": self.provider.name})
