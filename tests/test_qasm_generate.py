"""The generator end to end on a small run: records recomputed from their text (qiskit agrees to 1e-9), every
circuit verifies, splits disjoint by signature, deterministic for a seed, resumable without half records, bad
configs refused before any work, loadable with `datasets`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import qiskit.qasm3
from omegaconf import DictConfig, open_dict
from qiskit.quantum_info import Statevector

from quantum_ft.qasm import generate, problems
from quantum_ft.qasm.generate import GenerateError, load, run
from quantum_ft.qasm.hamiltonian import bits_of, index_of, parse_hamiltonian
from quantum_ft.qasm.verify import verify
from quantum_ft.utils.config import compose_config

SMALL = [
    "count=1",
    "qasm/sizes=small",
    "qasm.sizes.max_qubits=5",
    "qasm.ansatz.qaoa.layers=[1,2]",
    "qasm.ansatz.vqe.layers=[1]",
    "qasm.ansatz.restarts=2",
    "workers=1",
]


def compose_generate(overrides: list[str], out: Path) -> DictConfig:
    cfg = compose_config("qasm_generate", overrides)
    with open_dict(cfg):
        cfg.output.dir = str(out)
    return cfg


def records_of(out: Path) -> list[dict]:
    return [r for split in ("train", "val", "test") for r in load(out / f"{split}.jsonl.gz")]


def without_times(records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        r = json.loads(json.dumps(r))
        r["solution"].pop("optimization_time")
        out.append(r)
    return out


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """One instance of every class, 3-5 qubits, QAOA p=1,2 and VQE depth 1 (keeps failures to see them)."""
    out = tmp_path_factory.mktemp("qasm") / "run"
    run(compose_generate([*SMALL, "output.require_ground_top=false"], out), show_progress=False)
    return out


def test_every_class_and_the_record_fields(small_run: Path) -> None:
    records = records_of(small_run)
    assert {r["problem_type"] for r in records} == set(problems.REGISTRY)
    for r in records:
        assert set(r) >= {
            "signature", "problem_type", "optimization_type", "graph", "cost_hamiltonian", "number_of_qubits",
            "number_of_layers", "ansatz_id", "exact_solution", "solution", "circuit_with_params",
            "circuit_with_symbols", "problem_specific_attributes",
        }  # fmt: skip
        assert set(r["exact_solution"]) == {
            "smallest_eigenvalues", "number_of_smallest_eigenvalues", "first_excited_energy", "smallest_bitstrings"
        }  # fmt: skip
        sol = r["solution"]
        assert sol["probabilities"] == sorted(sol["probabilities"], reverse=True)
        assert [index_of(b) for b in sol["bitstrings"]] == sol["states"]
        assert r["exact_solution"]["number_of_smallest_eigenvalues"] == len(r["exact_solution"]["smallest_bitstrings"])
    card = json.loads((small_run / "card.json").read_text())
    assert sum(card["splits"].values()) == len(records)
    assert (small_run / "quality.png").stat().st_size > 1000


def test_stored_figures_come_from_the_written_text(small_run: Path) -> None:
    """qiskit imports the written circuit; Statevector gives the stored probabilities to 1e-9, the Hamiltonian
    string gives the stored energies, and the top bitstring decodes to a valid solution when it is a ground state."""
    for r in records_of(small_run):
        n = r["number_of_qubits"]
        circuit = qiskit.qasm3.loads(r["circuit_with_params"])
        circuit.remove_final_measurements()
        probs = Statevector(circuit).probabilities()
        sol = r["solution"]
        np.testing.assert_allclose([probs[index_of(b)] for b in sol["bitstrings"]], sol["probabilities"], atol=1e-9)
        energies = parse_hamiltonian(r["cost_hamiltonian"], n)
        assert float(probs @ energies) == pytest.approx(sol["expectation_value"], abs=1e-4)
        ground = [index_of(b) for b in r["exact_solution"]["smallest_bitstrings"]]
        assert float(probs[ground].sum()) == pytest.approx(sol["ground_state_probability"], abs=1e-9)
        assert energies.min() == pytest.approx(r["exact_solution"]["smallest_eigenvalues"][0], abs=1e-4)
        top = index_of(sol["bitstrings"][0])
        assert sol["most_probable_is_ground"] == (top in ground)
        inst_cls = problems.get(r["problem_type"])
        if sol["most_probable_is_ground"]:
            inst = rebuild(r)
            assert inst_cls.feasible(inst, bits_of(top, n))


def rebuild(r: dict):
    """The instance of a record, from its stored graph and attributes (as a reader of the dataset would)."""
    import networkx as nx

    g = nx.node_link_graph(json.loads(r["graph"]), edges="edges")
    attrs = json.loads(r["problem_specific_attributes"])
    name = r["problem_type"]
    mod = problems.get(name)
    if name == "hypergraph_max_cut":
        return mod.build(g.number_of_nodes(), attrs["hyperedges"], attrs["weights"])
    if name == "graph_isomorphism":
        g2 = nx.empty_graph(g.number_of_nodes())
        g2.add_edges_from(tuple(e) for e in attrs["graph_2_edges"])
        return mod.build(nx.Graph(g), g2)
    kwargs = {k: attrs[k] for k in ("root", "k", "colours", "source", "sink") if k in attrs}
    return mod.build(g, **kwargs)


def test_every_generated_circuit_verifies(small_run: Path) -> None:
    for r in records_of(small_run):
        verdict = verify(r["circuit_with_params"])
        assert verdict.valid, verdict.reason
        assert verdict.num_qubits == r["number_of_qubits"]


def test_splits_are_disjoint_by_signature(small_run: Path) -> None:
    sigs = {s: {r["signature"] for r in load(small_run / f"{s}.jsonl.gz")} for s in ("train", "val", "test")}
    assert not (sigs["train"] & sigs["val"]) and not (sigs["train"] & sigs["test"]) and not (sigs["val"] & sigs["test"])
    assert generate.split_of("abc", {"train": 0.9, "val": 0.05, "test": 0.05}) == generate.split_of(
        "abc", {"train": 0.9, "val": 0.05, "test": 0.05}
    )
    shares = {"train": 0.5, "val": 0.25, "test": 0.25}
    seen = {generate.split_of(f"sig{i}", shares) for i in range(50)}
    assert seen == {"train", "val", "test"}  # the split function does spread (the test above is not vacuous)


def test_loadable_with_datasets(small_run: Path) -> None:
    import datasets

    ds = datasets.load_dataset("json", data_files={"train": str(small_run / "train.jsonl.gz")}, split="train")
    assert len(ds) == len(load(small_run / "train.jsonl.gz"))
    assert "circuit_with_params" in ds.column_names


def test_deterministic_and_resumable(tmp_path: Path, monkeypatch, small_run: Path) -> None:
    """A run killed after 5 tasks, with a torn last line, continues to the same dataset as one uninterrupted run."""
    out = tmp_path / "resumed"
    cfg = compose_generate([*SMALL, "output.require_ground_top=false"], out)
    real_solve = generate.solve
    calls = {"n": 0}

    def dying(task, settings):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real_solve(task, settings)

    monkeypatch.setattr(generate, "solve", dying)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, show_progress=False)
    work = out / generate.WORK
    assert len(work.read_text().splitlines()) == 5
    with work.open("ab") as f:
        f.write(b'{"task": "max_cut/00000", "records": [{"signa')  # a write cut short by a kill
    monkeypatch.setattr(generate, "solve", real_solve)
    run(cfg, show_progress=False)
    lines = work.read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == len(generate.plan(generate.settings_of(cfg)))
    assert without_times(records_of(out)) == without_times(records_of(small_run))
    assert (out / "train.jsonl.gz").read_bytes() != b""


def test_other_settings_in_the_same_dir_are_refused(small_run: Path) -> None:
    with pytest.raises(GenerateError, match="other settings"):
        run(compose_generate([*SMALL, "seed=5", "output.require_ground_top=false"], small_run), show_progress=False)


@pytest.mark.parametrize(
    "override,message",
    [
        ("qasm.problems.names=[max_cut,tsp]", "unknown problem class 'tsp'.*known: max_cut"),
        ("qasm.problems.names=[steiner_tree]", "depth/flow"),
        ("+qasm.ansatz.adapt_vqe={layers:[1]}", "unknown ansatz adapt_vqe; known: qaoa, vqe"),
        ("qasm.ansatz.objective=cvar", "unknown objective 'cvar'; known: energy, ground_mass"),
        ("qasm.sizes.max_qubits=20", "over the verifier's cap"),
        ("qasm.ansatz.qaoa.layers=[0]", "at least one layer"),
    ],
)
def test_bad_configs_fail_before_any_work(tmp_path: Path, override: str, message: str) -> None:
    cfg = compose_generate([*SMALL, override], tmp_path / "bad")
    with pytest.raises(GenerateError, match=message):
        run(cfg, show_progress=False)
    assert not (tmp_path / "bad").exists()


def test_degenerate_instances_are_skipped_and_counted(tmp_path: Path, monkeypatch) -> None:
    import networkx as nx

    from quantum_ft.qasm.problems import k_clique

    def no_clique(rng, q):  # a 4-clique asked of a path: no feasible solution
        return k_clique.build(nx.path_graph(q), 4)

    import dataclasses

    monkeypatch.setitem(
        problems.REGISTRY, "k_clique", dataclasses.replace(problems.REGISTRY["k_clique"], random_instance=no_clique)
    )
    out = tmp_path / "deg"
    run(compose_generate([*SMALL, "qasm.problems.names=[k_clique]"], out), show_progress=False)
    card = json.loads((out / "card.json").read_text())
    assert card["skipped_instances"] == {"no feasible solution": 1}
    assert records_of(out) == []


@pytest.mark.integration
def test_cli_with_two_workers_gives_the_in_process_data(tmp_path: Path) -> None:
    names = "qasm.problems.names=[max_cut,vertex_cover,matching]"
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "quantum_ft.qasm.generate", *SMALL[:-1], "workers=2", f"output.dir={out}", names]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "README.md").exists() and records_of(out)
    inline = tmp_path / "inline"
    run(compose_generate([*SMALL, names], inline), show_progress=False)
    assert without_times(records_of(out)) == without_times(records_of(inline))
