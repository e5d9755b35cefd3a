"""The adapter-selection QUBO and its solvers, against references written here: a plain itertools brute force over
{0,1}^N with the energy summed term by term, the selection objective written out, and a PennyLane QAOA circuit
built from qml.qaoa layers on an Ising Hamiltonian derived independently (x = (1 - z) / 2)."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pytest

from quantum_ft.qasm.hamiltonian import diagonal as qasm_diagonal
from quantum_ft.quantum_opt import (
    AnnealingSolver,
    CloudSolver,
    ExactSolver,
    QaoaSolver,
    Qubo,
    Solution,
    Solver,
    SolverTimeout,
    SolverUnavailable,
    make_solver,
    reset_fallback_warnings,
    selection_qubo,
    solve_with_fallback,
)

# ---------------------------------------------------------------- references


def plain_energy(q: np.ndarray, offset: float, x: tuple[int, ...]) -> float:
    n = len(x)
    return sum(q[i][j] * x[i] * x[j] for i in range(n) for j in range(n)) + offset


def brute_force(q: np.ndarray, offset: float = 0.0, tol: float = 1e-9) -> tuple[float, list[tuple[int, ...]]]:
    """Minimum energy and every bitstring within tol of it."""
    n = len(q)
    table = {x: plain_energy(q, offset, x) for x in itertools.product((0, 1), repeat=n)}
    best = min(table.values())
    return best, [x for x, e in table.items() if e <= best + tol]


def selection_objective(imp, sim, m, redundancy, penalty, x) -> float:
    n = len(x)
    value = -sum(imp[i] * x[i] for i in range(n))
    value += redundancy * sum(sim[i][j] * x[i] * x[j] for i in range(n) for j in range(i + 1, n))
    return value + penalty * (sum(x) - m) ** 2


def random_selection(seed: int, n: int, redundancy: float = 1.0):
    rng = np.random.default_rng(seed)
    imp = rng.normal(0.0, 1.0, n)
    sim = rng.uniform(-0.2, 1.0, (n, n))
    sim = (sim + sim.T) / 2
    m = int(rng.integers(1, n + 1))
    return imp, sim, m, selection_qubo(imp, sim, m, redundancy=redundancy)


def index_of_bits(x) -> int:
    return sum(int(b) << i for i, b in enumerate(x))


@pytest.fixture(autouse=True)
def _fresh_warnings():
    reset_fallback_warnings()
    yield
    reset_fallback_warnings()


# ---------------------------------------------------------------- the QUBO


def test_energy_of_one_and_of_a_batch_equals_the_plain_sum():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(5, 5))  # neither symmetric nor triangular: folded, same energies
    qubo = Qubo(q, offset=0.7)
    states = list(itertools.product((0, 1), repeat=5))
    batch = qubo.energy(np.array(states))
    for x, e in zip(states, batch):
        assert e == pytest.approx(plain_energy(q, 0.7, x), abs=1e-12)
        assert qubo.energy(np.array(x)) == pytest.approx(e, abs=1e-12)


def test_diagonal_and_ising_follow_the_qasm_convention():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(4, 4))
    qubo = Qubo(q, offset=-1.5)
    diag = qubo.diagonal()
    for k in range(16):  # qubit i = bit i of the basis index
        x = tuple((k >> i) & 1 for i in range(4))
        assert diag[k] == pytest.approx(plain_energy(q, -1.5, x), abs=1e-12)
    terms, const = qubo.ising_terms()
    np.testing.assert_allclose(qasm_diagonal(terms, const, 4), diag, atol=1e-12)
    h, coupling, c = qubo.to_ising()
    for k in range(16):
        z = [1 - 2 * ((k >> i) & 1) for i in range(4)]
        e = c + sum(h[i] * z[i] for i in range(4))
        e += sum(coupling[i, j] * z[i] * z[j] for i in range(4) for j in range(i + 1, 4))
        assert e == pytest.approx(diag[k], abs=1e-12)


def test_selection_qubo_is_the_written_objective():
    imp, sim, m, _ = random_selection(3, 6)
    qubo = selection_qubo(imp, sim, m, redundancy=0.8, penalty=2.5)
    for x in itertools.product((0, 1), repeat=6):
        expected = selection_objective(imp, sim, m, 0.8, 2.5, x)
        assert qubo.energy(np.array(x)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_default_penalty_exceeds_what_one_flip_can_gain(seed):
    """The bound behind the guarantee, checked by enumeration: no single add or drop lowers the objective (the
    penalty left out) by as much as the default P, so from any x off budget a move towards it lowers the energy."""
    n = 6
    imp, sim, m, qubo = random_selection(50 + seed, n, redundancy=2.0)
    penalty = qubo.offset / m**2
    gain = 0.0
    for x in itertools.product((0, 1), repeat=n):
        f = selection_objective(imp, sim, m, 2.0, 0.0, x)
        for i in range(n):
            y = list(x)
            y[i] = 1 - y[i]
            gain = max(gain, f - selection_objective(imp, sim, m, 2.0, 0.0, y))
    assert penalty > gain
    assert penalty < 1.2 * gain + 1e-6 or gain == 0  # and not needlessly larger (a barrier for annealing and QAOA)


def test_two_identical_units_are_not_both_kept():
    """Units 0 and 1 are the same (importance 1, similarity 1); unit 2 is comparable (0.9) and distinct."""
    imp = np.array([1.0, 1.0, 0.9])
    sim = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    qubo = selection_qubo(imp, sim, budget=2, redundancy=1.0)
    both = qubo.energy(np.array([1, 1, 0]))
    one_plus_third = qubo.energy(np.array([1, 0, 1]))
    assert both > one_plus_third
    assert both - one_plus_third == pytest.approx(1.0 - 0.1)  # the redundancy paid minus the importance lost
    _, optima = brute_force(qubo.matrix, qubo.offset)
    assert sorted(optima) == [(0, 1, 1), (1, 0, 1)]


@pytest.mark.parametrize("seed", range(6))
def test_every_minimiser_keeps_exactly_the_budget(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(4, 9))
    redundancy = float(rng.choice([0.0, 1.0, 4.0]))
    imp, sim, m, qubo = random_selection(seed, n, redundancy=redundancy)
    _, optima = brute_force(qubo.matrix, qubo.offset)
    assert optima and all(sum(x) == m for x in optima), (m, optima)


def test_a_penalty_below_the_bound_can_break_the_budget():
    """The default penalty is what guarantees the budget: a small explicit one lets unimportant units go."""
    imp = np.array([-1.0, -1.0, -1.0])
    sim = np.zeros((3, 3))
    _, optima = brute_force(selection_qubo(imp, sim, budget=2, penalty=0.1).matrix)
    assert all(sum(x) == 0 for x in optima)
    _, optima = brute_force(selection_qubo(imp, sim, budget=2).matrix)
    assert all(sum(x) == 2 for x in optima)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"importance": np.ones(3), "similarity": np.zeros((2, 2)), "budget": 1}, r"similarity must be \(3, 3\)"),
        ({"importance": np.ones((2, 2)), "similarity": np.zeros((2, 2)), "budget": 1}, "non-empty 1-D"),
        (
            {"importance": np.ones(3), "similarity": np.zeros((3, 3)), "budget": 0},
            r"budget must be an integer in 1\.\.3",
        ),
        (
            {"importance": np.ones(3), "similarity": np.zeros((3, 3)), "budget": 4},
            r"budget must be an integer in 1\.\.3",
        ),
        ({"importance": np.ones(3), "similarity": np.zeros((3, 3)), "budget": 1.5}, "budget must be an integer"),
        ({"importance": np.array([1.0, np.nan, 0]), "similarity": np.zeros((3, 3)), "budget": 1}, "must be finite"),
        ({"importance": np.ones(2), "similarity": np.array([[0, 1.0], [0, 0]]), "budget": 1}, "must be symmetric"),
        (
            {"importance": np.ones(2), "similarity": np.zeros((2, 2)), "budget": 1, "redundancy": -1},
            "redundancy must be finite and >= 0",
        ),
        (
            {"importance": np.ones(2), "similarity": np.zeros((2, 2)), "budget": 1, "penalty": 0.0},
            "penalty must be finite and > 0",
        ),
    ],
)
def test_selection_qubo_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        selection_qubo(**kwargs)


def test_qubo_rejects_bad_matrices_and_states():
    with pytest.raises(ValueError, match=r"square \(N, N\)"):
        Qubo(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        Qubo(np.array([[np.inf]]))
    with pytest.raises(ValueError, match="2 names for 3 variables"):
        Qubo(np.zeros((3, 3)), labels=("a", "b"))
    qubo = Qubo(np.eye(3))
    with pytest.raises(ValueError, match="length 3"):
        qubo.energy(np.zeros(4))
    with pytest.raises(ValueError, match="every entry must be 0 or 1"):
        qubo.energy(np.array([0, 2, 1]))


# ---------------------------------------------------------------- classical solvers


@pytest.mark.parametrize("n", range(6, 11))
def test_exact_solver_equals_brute_force(n):
    rng = np.random.default_rng(n)
    qubo = Qubo(rng.normal(size=(n, n)), offset=0.3)
    best, optima = brute_force(qubo.matrix, qubo.offset)
    for solver in (ExactSolver(), ExactSolver(chunk=7)):  # one chunk, and many uneven ones
        solution = solver.solve(qubo)
        assert solution.energy == pytest.approx(best, abs=1e-9)
        assert tuple(int(v) for v in solution.x) in optima
        assert solution.solver == "exact" and solution.info["states"] == 2**n


@pytest.mark.parametrize("seed", range(3))
def test_annealing_finds_the_exact_optimum(seed):
    n = 8 + seed
    imp, sim, m, qubo = random_selection(10 + seed, n)
    best, optima = brute_force(qubo.matrix, qubo.offset)
    solver = AnnealingSolver(num_reads=16, num_sweeps=500, seed=seed)
    solution = solver.solve(qubo)
    assert solution.energy == pytest.approx(best, abs=1e-9)
    assert tuple(int(v) for v in solution.x) in optima
    assert np.array_equal(solver.solve(qubo).x, solution.x)  # the seed makes it reproducible


# ---------------------------------------------------------------- QAOA


def pennylane_reference_energy(qubo: Qubo, params: np.ndarray) -> float:
    """<E> of the QAOA state built from qml.qaoa.cost_layer / mixer_layer (exp(-i gamma H_C), exp(-i beta sum X))
    with H_C from x_i = (1 - Z_i) / 2 expanded here, not by the package."""
    import pennylane as qml

    q = qubo.matrix
    n = len(q)
    coeffs, ops, const = [], [], qubo.offset
    for i in range(n):
        for j in range(n):
            c = q[i, j]
            if i == j:  # c x_i = c/2 - c/2 Z_i
                const += c / 2
                coeffs.append(-c / 2)
                ops.append(qml.Z(i))
            else:  # c x_i x_j = c/4 (1 - Z_i - Z_j + Z_i Z_j)
                const += c / 4
                coeffs += [-c / 4, -c / 4, c / 4]
                ops += [qml.Z(i), qml.Z(j), qml.Z(i) @ qml.Z(j)]
    cost = qml.Hamiltonian(coeffs, ops).simplify()
    mixer = qml.qaoa.x_mixer(range(n))
    p = len(params) // 2

    @qml.qnode(qml.device("default.qubit", wires=n))
    def circuit():
        for w in range(n):
            qml.Hadamard(w)
        for layer in range(p):
            qml.qaoa.cost_layer(params[layer], cost)
            qml.qaoa.mixer_layer(params[p + layer], mixer)
        return qml.expval(cost)

    return float(circuit()) + const


def test_qaoa_engine_expectation_equals_a_pennylane_circuit():
    _, _, _, qubo = random_selection(21, 5)
    params = np.array([0.013, -0.021, 0.7, 0.31])  # p = 2, gammas small: the penalty makes the energies large
    reference = pennylane_reference_energy(qubo, params)
    engine = QaoaSolver("engine").expected_energy(qubo, params)
    ours_on_pennylane = QaoaSolver("pennylane").expected_energy(qubo, params)
    assert engine == pytest.approx(reference, abs=1e-8)
    assert ours_on_pennylane == pytest.approx(reference, abs=1e-8)
    np.testing.assert_allclose(
        QaoaSolver("engine").probabilities(qubo, params),
        QaoaSolver("pennylane").probabilities(qubo, params),
        atol=1e-10,
    )


def test_qaoa_engine_returns_a_feasible_selection_and_its_approximation_data():
    imp, sim, m, qubo = random_selection(5, 7)
    best, optima = brute_force(qubo.matrix, qubo.offset)
    energies = [plain_energy(qubo.matrix, qubo.offset, x) for x in itertools.product((0, 1), repeat=7)]
    solver = QaoaSolver("engine", layers=2, restarts=4, seed=0)
    solution = solver.solve(qubo, timeout_s=30)
    info = solution.info
    assert int(solution.x.sum()) == m  # feasible: keeps exactly the budget
    assert solution.energy >= best - 1e-9
    assert info["optimal"] == (tuple(int(v) for v in solution.x) in optima)
    probs = solver.probabilities(qubo, np.array(info["params"]))
    diag = qubo.diagonal()
    assert info["expected_energy"] == pytest.approx(float(probs @ diag), rel=1e-9)
    e_max = max(energies)
    assert info["approximation_ratio"] == pytest.approx((e_max - info["expected_energy"]) / (e_max - best), rel=1e-9)
    assert info["p_optimum"] == pytest.approx(sum(probs[index_of_bits(x)] for x in optima), abs=1e-12)
    assert 0 < info["approximation_ratio"] <= 1 and 0 <= info["p_optimum"] <= 1


def test_qaoa_pennylane_solves_a_tiny_instance():
    imp = np.array([0.2, 1.0, 0.1, 0.8])
    sim = np.zeros((4, 4))
    qubo = selection_qubo(imp, sim, budget=2)
    best, optima = brute_force(qubo.matrix, qubo.offset)
    solution = QaoaSolver("pennylane", layers=1, restarts=2, top_k=4, seed=0).solve(qubo, timeout_s=30)
    assert solution.solver == "qaoa-pennylane"
    assert tuple(int(v) for v in solution.x) in optima and solution.selected == [1, 3]
    assert solution.energy == pytest.approx(best)
    assert 0 < solution.info["approximation_ratio"] <= 1


# ---------------------------------------------------------------- limits, timeouts, fallback


def test_qaoa_honours_its_timeout():
    _, _, _, qubo = random_selection(7, 14)
    solver = QaoaSolver("engine", layers=6, restarts=8, maxiter=500)
    start = time.perf_counter()
    with pytest.raises(SolverTimeout, match=r"qaoa-engine: timed out after 0\.2 s \(QAOA angle optimisation"):
        solver.solve(qubo, timeout_s=0.2)
    assert time.perf_counter() - start < 2.0


def test_annealing_honours_its_timeout():
    rng = np.random.default_rng(0)
    qubo = Qubo(rng.normal(size=(60, 60)))
    start = time.perf_counter()
    with pytest.raises(SolverTimeout, match="annealing: timed out"):
        AnnealingSolver(num_reads=10_000, num_sweeps=20_000, timeout_s=0.2).solve(qubo)
    assert time.perf_counter() - start < 2.0


def test_fallback_answers_and_warns_once_per_key(caplog):
    _, _, _, qubo = random_selection(8, 12)
    best, optima = brute_force(qubo.matrix, qubo.offset)
    primary = QaoaSolver("engine", layers=6, restarts=8, maxiter=500)
    with caplog.at_level(logging.DEBUG, logger="quantum_ft.quantum_opt.solvers"):
        results = [
            solve_with_fallback(primary, ExactSolver(), qubo, timeout_s=0.2, warn_once_key="run-1") for _ in "ab"
        ]
    for solution, fell_back in results:
        assert fell_back and solution.solver == "exact"
        assert tuple(int(v) for v in solution.x) in optima
        assert "timed out" in solution.info["fallback_reason"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "'qaoa-engine' could not answer" in text and "timed out" in text and "fallback solver 'exact'" in text


def test_too_many_variables_is_a_clear_error_and_falls_back(caplog):
    _, _, _, qubo = random_selection(9, 6)
    small = QaoaSolver("engine", max_variables=4)
    with pytest.raises(SolverUnavailable, match="6 variables exceed max_variables=4"):
        small.solve(qubo)
    with caplog.at_level(logging.WARNING):
        solution, fell_back = solve_with_fallback(small, ExactSolver(), qubo)
    assert fell_back and solution.solver == "exact"
    assert solution.energy == pytest.approx(brute_force(qubo.matrix, qubo.offset)[0])
    assert "max_variables=4" in caplog.text
    primary, fell_back = solve_with_fallback(ExactSolver(), small, qubo)
    assert not fell_back and primary.solver == "exact"


# ---------------------------------------------------------------- cloud adapter


def test_cloud_solver_without_a_token_fails_fast(monkeypatch):
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    monkeypatch.delenv("AZURE_QUANTUM_CONNECTION_STRING", raising=False)
    qubo = Qubo(np.eye(3))
    start = time.perf_counter()
    with pytest.raises(SolverUnavailable, match="environment variable DWAVE_API_TOKEN is not set"):
        CloudSolver("dwave-leap").solve(qubo)
    with pytest.raises(SolverUnavailable, match="AZURE_QUANTUM_CONNECTION_STRING is not set"):
        CloudSolver("azure-quantum").solve(qubo)
    assert time.perf_counter() - start < 2.0
    solution, fell_back = solve_with_fallback(CloudSolver(), ExactSolver(), qubo)
    assert fell_back and solution.solver == "exact" and "no credential" in solution.info["fallback_reason"]


def test_cloud_solver_names_a_missing_client_package(monkeypatch):
    monkeypatch.setenv("DWAVE_API_TOKEN", "not-a-real-token")
    with pytest.raises(SolverUnavailable, match=r"'quantum_ft_no_such_client' is not installed; pip install dwave"):
        CloudSolver("dwave-leap", package="quantum_ft_no_such_client").solve(Qubo(np.eye(2)))


def slow_submit(qubo, token, endpoint, timeout_s):
    time.sleep(5)


def failing_submit(qubo, token, endpoint, timeout_s):
    raise ConnectionError("name resolution failed")


def test_cloud_solver_never_waits_past_its_timeout(monkeypatch):
    monkeypatch.setenv("DWAVE_API_TOKEN", "not-a-real-token")
    qubo = Qubo(np.eye(2))
    solver = CloudSolver("dwave-leap", package="json", submit=slow_submit, timeout_s=0.3)  # json: "installed"
    start = time.perf_counter()
    with pytest.raises(SolverTimeout, match=r"no answer within 0\.3 s"):
        solver.solve(qubo)
    assert time.perf_counter() - start < 1.5
    failing = CloudSolver("dwave-leap", package="json", submit=f"{__name__}:failing_submit")
    with pytest.raises(SolverUnavailable, match="submission failed .ConnectionError: name resolution failed"):
        failing.solve(qubo)
    answering = CloudSolver("dwave-leap", package="json", submit=lambda q, t, e, s: np.array([0, 1]))
    solution = answering.solve(Qubo(np.diag([1.0, -1.0])))
    assert solution.selected == [1] and solution.energy == -1.0 and solution.solver == "cloud-dwave-leap"


# ---------------------------------------------------------------- registry


def test_solvers_are_made_by_name_path_or_hydra_target():
    from hydra.utils import instantiate

    assert isinstance(make_solver("exact"), ExactSolver)
    qaoa = make_solver({"_target_": "quantum_ft.quantum_opt.QaoaSolver", "layers": 1, "backend": "pennylane"})
    assert isinstance(qaoa, QaoaSolver) and qaoa.layers == 1 and qaoa.max_variables == 12
    assert make_solver("quantum_ft.quantum_opt.AnnealingSolver", num_reads=3).num_reads == 3
    hydra_made = instantiate({"_target_": "quantum_ft.quantum_opt.CloudSolver", "provider": "azure-quantum"})
    assert isinstance(hydra_made, Solver) and hydra_made.max_variables == 25
    with pytest.raises(ValueError, match="unknown solver 'nope'"):
        make_solver("nope")
    with pytest.raises(ValueError, match="unknown backend 'qiskit'"):
        QaoaSolver("qiskit")
    assert isinstance(make_solver(qaoa), QaoaSolver)
    assert Solution(np.array([1, 0, 1]), 0.0, 0.0, "x").selected == [0, 2]
