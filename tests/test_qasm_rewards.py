"""The circuit rewards: hand-checked values on a table of completions, divergences against scipy, any string gives
finite numbers in [0, 1], and the worker pool gives the in-process scores."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from quantum_ft.qasm.generate import load
from quantum_ft.qasm.prompts import prompt_columns
from quantum_ft.qasm.rewards import (
    COMPONENTS,
    CircuitReward,
    CircuitScore,
    divergences,
    extract_answer,
    format_score,
    score_completion,
    target_of,
)
from quantum_ft.utils.config import resource

HEADER = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


@pytest.fixture(scope="module")
def record() -> dict:
    """A 4-qubit max-cut record of the shipped test split with a single pair of ground states."""
    rows = load(resource("qasm/test.jsonl.gz"))
    return next(r for r in rows if r["problem_type"] == "max_cut" and r["number_of_qubits"] == 4)


@pytest.fixture(scope="module")
def columns(record) -> dict:
    return prompt_columns(record)


def basis_state_circuit(bits: str) -> str:
    """A program that prepares |bits> exactly (character i is qubit i)."""
    flips = "".join(f"x q[{i}];\n" for i, b in enumerate(bits) if b == "1")
    return f"{HEADER}qubit[{len(bits)}] q;\n{flips}"


def test_reference_circuit_scores_one_on_distribution_and_compile(columns) -> None:
    s = score_completion(columns["reference_circuit"], target_of(columns))
    assert s.kind == "ok" and s.compile == 1.0 and s.qubits_match
    assert s.distribution == pytest.approx(1.0) and s.js == pytest.approx(0.0, abs=1e-12)
    assert s.kl == pytest.approx(0.0, abs=1e-9) and s.length == 1.0 and s.format == 1.0


def test_a_circuit_that_prepares_a_ground_state_scores_one_on_the_physics(columns) -> None:
    ground = columns["ground_states"][0]
    s = score_completion(basis_state_circuit(ground), target_of(columns))
    assert (s.energy, s.ground_mass, s.correct) == (1.0, 1.0, 1.0)
    target = target_of(columns)
    assert s.expectation == pytest.approx(target.energies.min())


def test_a_circuit_on_the_worst_state_scores_zero_energy(columns) -> None:
    target = target_of(columns)
    worst = int(np.argmax(target.energies))
    bits = "".join(str((worst >> q) & 1) for q in range(4))
    s = score_completion(basis_state_circuit(bits), target)
    assert (s.energy, s.ground_mass, s.correct, s.compile) == (0.0, 0.0, 0.0, 1.0)


def test_energy_of_the_uniform_superposition_by_hand(columns) -> None:
    """H on every qubit: <H> is the mean of the diagonal; every state ties for most probable, so `correct` is 0."""
    target = target_of(columns)
    s = score_completion(f"{HEADER}qubit[4] q;\nh q[0];\nh q[1];\nh q[2];\nh q[3];\n", target)
    e = target.energies
    assert s.energy == pytest.approx((e.max() - e.mean()) / (e.max() - e.min()))
    assert s.ground_mass == pytest.approx(len(columns["ground_states"]) / 16)
    assert s.correct == 0.0


@pytest.mark.parametrize(
    ("completion", "kind"),
    [
        (basis_state_circuit("101"), "wrong_qubits"),
        (f"{HEADER}qubit[4] q;\nh q[0]\ncx q[0] q[1];", "parse_error"),
        (f"{HEADER}qubit[4] q;\nfoo q[0];", "undefined_gate"),
        ("", "no_header"),
        ("x" * 10_000_000, "too_long"),
        (f"{HEADER}qubit[40] q;\nh q[0];", "too_many_qubits"),
        ("\u2603\u0000\ud7ff\U0001f600 OPENQASM \u00e9\u00e8", "no_header"),
        ("<think></think><answer></answer>", "no_header"),
        (f"{HEADER}qubit[4] q;\n" + "h q[0];\n" * 6000, "too_many_gates"),
    ],
)
def test_bad_completions_score_zero_on_the_physics(columns, completion: str, kind: str) -> None:
    s = score_completion(completion, target_of(columns))
    assert s.kind == kind
    assert (s.distribution, s.energy, s.ground_mass, s.correct) == (0.0, 0.0, 0.0, 0.0)
    assert s.compile == (1.0 if kind == "wrong_qubits" else 0.0)


def test_answer_extraction_with_tags_fences_and_prose() -> None:
    program = basis_state_circuit("10")
    assert extract_answer(program) == program.strip()
    assert extract_answer(f"<think>easy</think>\n<answer>\n{program}</answer>") == program.strip()
    assert extract_answer(f"Here it is:\n```qasm\n{program}```\nHope it helps.") == program.strip()
    assert extract_answer(f"<answer>```openqasm3\n{program}```</answer>") == program.strip()
    assert extract_answer(f"{program}\nThis circuit flips qubit 0.") == program.strip()


def test_format_depends_on_whether_the_prompt_asked_for_tags() -> None:
    program = basis_state_circuit("10")
    tagged = f"<think>flip qubit 0</think>\n<answer>\n{program}</answer>"
    assert format_score(tagged, tags=True) == 1.0 and format_score(tagged, tags=False) == 0.0
    assert format_score(program, tags=True) == 0.0 and format_score(program, tags=False) == 1.0
    assert format_score(f"```qasm\n{program}```", tags=False) == 1.0
    assert format_score(f"Sure! {program}", tags=False) == 0.0
    assert format_score("<think></think><answer>x</answer>", tags=True) == 0.0  # a tag without content


def test_divergences_match_scipy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(8)), rng.dirichlet(np.ones(8))
        p[rng.integers(8)] = 0.0  # zeros: no NaN from 0 log 0
        p /= p.sum()
        js, kl = divergences(p, q, epsilon=0.0)
        assert js == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)
        assert kl == pytest.approx(entropy(p, q, base=2), abs=1e-12)
    js, kl = divergences(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert js == pytest.approx(1.0) and np.isfinite(kl)


def test_kl_reward_is_one_over_one_plus_kl(columns) -> None:
    s = score_completion(basis_state_circuit(columns["ground_states"][0]), target_of(columns))
    assert s.component("distribution", "kl") == pytest.approx(1 / (1 + s.kl))
    assert CircuitScore().component("distribution", "kl") == 0.0


def test_bit_reversed_reference_scores_lower() -> None:
    """Qubit order matters: the reference with qubit i renamed n-1-i puts its mass on the reversed bitstrings
    (on a record whose ground set is not its own mirror image)."""
    rows = load(resource("qasm/test.jsonl.gz"))
    record = next(
        r
        for r in rows
        if {b[::-1] for b in r["exact_solution"]["smallest_bitstrings"]}.isdisjoint(
            r["exact_solution"]["smallest_bitstrings"]
        )
    )
    columns = prompt_columns(record)
    n = record["number_of_qubits"]
    text = columns["reference_circuit"]
    for i in range(n):
        text = text.replace(f"q[{i}]", f"q[@{n - 1 - i}]")
    flipped = score_completion(text.replace("@", ""), target_of(columns))
    straight = score_completion(columns["reference_circuit"], target_of(columns))
    assert flipped.compile == 1.0 and flipped.js > 0.1 and flipped.correct == 0.0
    assert straight.correct == 1.0 and flipped.ground_mass < straight.ground_mass


def test_random_strings_give_finite_numbers_in_range(columns) -> None:
    rng = random.Random(0)
    vocab = ["OPENQASM 3.0;", 'include "stdgates.inc";', "qubit[4] q;", "h q[0];", "cx q[0], q[1];", "rz(", ")",
             "q[9];", "gate g a { h a; }", "g q[1];", "measure", "<answer>", "</answer>", "```", ";", "\n", "nan",
             "rx(1e308) q[2];", "rx(inf) q[0];", "qubit[99] r;"]  # fmt: skip
    completions = ["".join(rng.choice(string.printable) for _ in range(rng.randint(0, 200))) for _ in range(100)] + [
        " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 30))) for _ in range(200)
    ]
    target = target_of(columns)
    for text in completions:
        s = score_completion(text, target)
        for name in COMPONENTS:
            value = s.component(name)
            assert np.isfinite(value) and 0.0 <= value <= 1.0, (name, value, text)


def test_the_pool_gives_the_in_process_scores_and_every_component_reads_one_batch(columns) -> None:
    completions = [columns["reference_circuit"], basis_state_circuit(columns["ground_states"][0]), "junk", ""]
    cols = {k: [v] * len(completions) for k, v in columns.items()}
    local = {c: CircuitReward(c, scorer={"workers": 0})([""] * 4, completions, **cols) for c in COMPONENTS}
    pooled = CircuitReward("energy", scorer={"workers": 2})
    assert pooled.scorer is CircuitReward("correct", scorer={"workers": 2}).scorer  # one pool per settings
    pooled.prefetch([""] * 4, completions, **cols)
    for c in COMPONENTS:
        assert CircuitReward(c, scorer={"workers": 2})([""] * 4, completions, **cols) == pytest.approx(local[c])
    assert local["correct"] == [1.0, 1.0, 0.0, 0.0]


def test_missing_columns_are_named() -> None:
    with pytest.raises(KeyError, match="reference_circuit"):
        CircuitReward("energy", scorer={"workers": 0})(["p"], ["c"], num_qubits=[2], hamiltonian=["1 * Z0"])
    with pytest.raises(ValueError, match="component"):
        CircuitReward("elegance")
