"""QAOA as a QUBO solver, on our exact engine (quantum_ft.qasm.simulator, optimised by qasm.optimize's
qaoa_schedule) or on PennyLane's default.qubit, with one angle convention: H on every qubit, then per layer
exp(-i gamma E) and rx(2 beta) on every qubit (exp(-i beta X)); gamma multiplies the QUBO's own energies.

Both backends simulate the full 2^N state, so the optimum is known classically and is used only to report the
approximation data; the answer itself is read from the optimised circuit's output distribution (the lowest-energy
state among its `top_k` most probable states, or among `shots` samples)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from quantum_ft.qasm.ansatz import Ansatz
from quantum_ft.qasm.hamiltonian import Spectrum, spectrum
from quantum_ft.qasm.optimize import Problem, qaoa_schedule
from quantum_ft.qasm.simulator import Engine

from .qubo import Qubo, basis_bits
from .solvers import Deadline, Solution, Solver

BACKENDS = {"engine": 16, "pennylane": 12}  # backend -> default max_variables (seconds per solve on a CPU core)


class _TimedProblem(Problem):
    """qasm.optimize.Problem (energy objective) that checks the time budget at every optimiser evaluation."""

    def __init__(self, energies: np.ndarray, spec: Spectrum, n: int, deadline: Deadline) -> None:
        super().__init__(energies, spec, n, objective="energy")
        self.deadline = deadline

    def value_and_grad(self, ansatz: Ansatz, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.deadline.check("QAOA angle optimisation (engine)")
        return super().value_and_grad(ansatz, x)


class _PennyLaneProblem:
    """The same objective and parameter units as _TimedProblem (normalised energy, gamma in units of 1/std(E)),
    computed by a PennyLane default.qubit circuit with torch backprop; duck-types Problem for qaoa_schedule."""

    def __init__(self, qubo: Qubo, energies: np.ndarray, spec: Spectrum, deadline: Deadline) -> None:
        self.qubo, self.n, self.deadline = qubo, qubo.num_variables, deadline
        self.scale = float(np.std(energies)) or 1.0
        self.energies = torch.as_tensor(energies, dtype=torch.float64)
        self.e0, self.span = spec.ground_energy, max(spec.max_energy - spec.ground_energy, 1e-12)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        p = x.shape[1] // 2
        circuit_params = torch.cat([x[:, :p] / self.scale, x[:, p:]], dim=1)
        probs = pennylane_probabilities(self.qubo, circuit_params)
        return (probs @ self.energies - self.e0) / self.span

    def to_circuit_units(self, ansatz: Ansatz, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float64)
        x[: ansatz.layers] /= self.scale
        return x

    def run(self, ansatz: Ansatz, starts: np.ndarray, maxiter: int = 200, tol: float = 1e-7) -> tuple:
        """L-BFGS-B over every start at once, as Problem.run (the rows' sum separates)."""
        r, k = starts.shape
        evals = 0

        def fun(flat: np.ndarray):
            nonlocal evals
            self.deadline.check("QAOA angle optimisation (pennylane)")
            evals += 1
            xt = torch.tensor(flat.reshape(r, k), requires_grad=True)
            total = self.values(xt).sum()
            total.backward()
            return float(total.detach()), xt.grad.numpy().reshape(-1)

        res = minimize(fun, starts.reshape(-1), jac=True, method="L-BFGS-B", options={"maxiter": maxiter, "ftol": tol})
        x = res.x.reshape(r, k)
        with torch.no_grad():
            vals = self.values(torch.tensor(x)).numpy()
        best = int(np.argmin(vals))
        return x[best], float(vals[best]), int(res.nit), evals


def pennylane_probabilities(qubo: Qubo, params: torch.Tensor) -> torch.Tensor:
    """Output probabilities (R, 2^N) of the QAOA circuit with params (R, 2p) = gammas then betas, on
    default.qubit, reordered to our basis index (qubit i = bit i; PennyLane puts wire 0 in the top bit)."""
    import pennylane as qml

    n = qubo.num_variables
    h, coupling, _ = qubo.to_ising()  # E = sum h z + sum J z z + const; the constant is a global phase
    singles = [(i, float(h[i])) for i in range(n) if h[i]]
    pairs = [(int(i), int(j), float(coupling[i, j])) for i, j in zip(*np.nonzero(coupling))]
    params = torch.as_tensor(params, dtype=torch.float64).reshape(-1, params.shape[-1])
    p = params.shape[1] // 2
    device = qml.device("default.qubit", wires=n)

    @qml.qnode(device, interface="torch", diff_method="backprop")
    def circuit(gammas: torch.Tensor, betas: torch.Tensor):
        for w in range(n):
            qml.Hadamard(wires=w)
        for layer in range(p):
            gamma = gammas[:, layer]
            for i, c in singles:  # RZ(phi) = exp(-i phi Z / 2)
                qml.RZ(2 * c * gamma, wires=i)
            for i, j, c in pairs:  # IsingZZ(phi) = exp(-i phi ZZ / 2)
                qml.IsingZZ(2 * c * gamma, wires=[i, j])
            for w in range(n):
                qml.RX(2 * betas[:, layer], wires=w)
        return qml.probs(wires=range(n))

    r = params.shape[0]
    probs = circuit(params[:, :p], params[:, p:]).reshape((r,) + (2,) * n)
    return probs.permute(0, *range(n, 0, -1)).reshape(r, 2**n)


class QaoaSolver(Solver):
    """QAOA depth `layers` with angles optimised from `restarts` starts (p = 1 .. layers warm-started by INTERP,
    qasm.optimize.qaoa_schedule); the time budget is checked at every optimiser evaluation.

    backend: "engine" (our batched simulator, exact adjoint gradients) or "pennylane" (default.qubit, torch
    backprop). Decoding: the lowest-energy state among the `top_k` most probable (shots=None), or among `shots`
    samples drawn from the output distribution with `seed`."""

    def __init__(
        self,
        backend: str = "engine",
        layers: int = 2,
        restarts: int = 4,
        seed: int = 0,
        top_k: int = 8,
        shots: int | None = None,
        maxiter: int = 200,
        max_variables: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"QaoaSolver: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        super().__init__(BACKENDS[backend] if max_variables is None else max_variables, timeout_s)
        if layers < 1:
            raise ValueError(f"QaoaSolver: layers (QAOA depth p) must be >= 1, got {layers}")
        if restarts < (3 if layers > 1 else 1):
            raise ValueError(
                f"QaoaSolver: restarts must be >= 3 when layers > 1 (the INTERP warm start fills three rows), "
                f"got {restarts}"
            )
        if top_k < 1 or (shots is not None and shots < 1):
            raise ValueError(f"QaoaSolver: top_k and shots must be >= 1, got top_k={top_k}, shots={shots}")
        self.backend, self.layers, self.restarts, self.seed = backend, int(layers), int(restarts), seed
        self.top_k, self.shots, self.maxiter = int(top_k), shots, int(maxiter)
        self.name = f"qaoa-{backend}"

    def probabilities(self, qubo: Qubo, params: np.ndarray) -> np.ndarray:
        """Output distribution (2^N,) for circuit angles params = (gamma_1..p, beta_1..p) on this backend."""
        x = torch.as_tensor(np.asarray(params, dtype=np.float64)).reshape(1, -1)
        with torch.no_grad():
            if self.backend == "pennylane":
                return pennylane_probabilities(qubo, x)[0].numpy()
            return Engine(qubo.diagonal(), qubo.num_variables).probabilities("qaoa", x, x.shape[1] // 2)[0].numpy()

    def expected_energy(self, qubo: Qubo, params: np.ndarray) -> float:
        """<E> of the QAOA state with these angles: sum_k p_k E_k (the QUBO energy, offset included)."""
        return float(self.probabilities(qubo, params) @ qubo.diagonal())

    def _solve(self, qubo: Qubo, deadline: Deadline) -> Solution:
        n = qubo.num_variables
        energies = qubo.diagonal()
        spec = spectrum(energies)
        if self.backend == "engine":
            problem = _TimedProblem(energies, spec, n, deadline)
        else:
            problem = _PennyLaneProblem(qubo, energies, spec, deadline)
        rng = np.random.default_rng(self.seed)
        result = qaoa_schedule(problem, [self.layers], rng, restarts=self.restarts, maxiter=self.maxiter)[self.layers]
        deadline.check("after the angle optimisation")
        probs = self.probabilities(qubo, result.params)
        probs = probs / probs.sum()
        if self.shots is None:
            candidates = np.argsort(-probs, kind="stable")[: self.top_k]
        else:
            candidates = np.unique(rng.choice(probs.size, size=self.shots, p=probs))
        k = int(candidates[np.argmin(energies[candidates])])
        x = basis_bits(n, k, k + 1)[0]
        expected = float(probs @ energies)
        span = spec.max_energy - spec.ground_energy
        info = {
            "backend": self.backend,
            "layers": self.layers,
            "params": [float(v) for v in result.params],
            "expected_energy": expected,
            "optimum_energy": spec.ground_energy,
            "max_energy": spec.max_energy,
            # (E_max - <E>) / (E_max - E_min): 1 when all probability sits on optima, 0 on the worst states
            "approximation_ratio": 1.0 if span <= 0 else (spec.max_energy - expected) / span,
            "solution_ratio": 1.0 if span <= 0 else (spec.max_energy - float(energies[k])) / span,
            "p_optimum": float(probs[spec.ground_indices].sum()),
            "solution_probability": float(probs[k]),
            "solution_rank": int(np.sum(probs > probs[k])),
            "optimal": bool(energies[k] <= spec.ground_energy + spec.tol),
            "optimizer_steps": result.steps,
            "optimizer_evaluations": result.evaluations,
        }
        return Solution(x, float(qubo.energy(x)), 0.0, self.name, info)
