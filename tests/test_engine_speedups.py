"""The torch engine's fast paths (quantum/vqc.py) against PennyLane and against each other: dense fused factors
(n <= DENSE_QUBITS), fused by blocks, two-block gate path, per-row blocks when re-uploading, and the plan's folds."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from quantum_ft.quantum import VQCSpec, make_circuit
from quantum_ft.quantum.vqc import (
    DENSE_QUBITS,
    _encoded_in_order,
    choose_mode,
    compile_plan,
    light_cones,
    quadratic_to_trig,
    simulate,
    trig_features_t,
)


def outputs_and_grads(fn, h0: torch.Tensor, theta0: torch.Tensor, weights: torch.Tensor):
    h, theta = h0.clone().requires_grad_(True), theta0.clone().requires_grad_(True)
    z = fn(h, theta)
    (z * weights).sum().backward()
    return z.detach(), h.grad, theta.grad


def inputs(spec: VQCSpec, rows: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(rows, spec.n_qubits, generator=g, dtype=torch.float64)
    theta = torch.rand(spec.weight_shape, generator=g, dtype=torch.float64) * 2 * math.pi
    return h, theta, torch.randn(rows, spec.n_qubits, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n,layers,reupload", [(6, 2, False), (7, 1, False), (7, 2, True)])
def test_wide_paths_match_pennylane(n: int, layers: int, reupload: bool) -> None:
    """n = 6: the dense fused chain at its widest; n = 7: fused by blocks, two-block gates, per-row blocks."""
    assert DENSE_QUBITS == 6
    spec = VQCSpec(n, layers, reupload)
    h, theta, w = inputs(spec, 3, seed=n)
    ref = outputs_and_grads(make_circuit(spec, "pennylane", "default.qubit"), h, theta, w)
    for mode in ["gates"] if reupload else ["gates", "fused"]:
        ours = outputs_and_grads(make_circuit(spec, "torch", mode=mode), h, theta, w)
        for name, a, b in zip(["<Z>", "d/dh", "d/dtheta"], ours, ref):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=f"{mode} {name}")


@pytest.mark.parametrize("n,layers", [(2, 1), (3, 4), (5, 3), (8, 2), (11, 1)])
def test_fused_equals_gates(n: int, layers: int) -> None:
    spec = VQCSpec(n, layers)
    h, theta, w = inputs(spec, 5)
    fused = outputs_and_grads(lambda a, b: simulate(a, b, spec, "fused"), h, theta, w)
    gates = outputs_and_grads(lambda a, b: simulate(a, b, spec, "gates"), h, theta, w)
    for a, b in zip(fused, gates):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


@pytest.mark.parametrize("n,layers", [(5, 1), (8, 2)])
def test_light_cone_mode_matches_pennylane(n: int, layers: int) -> None:
    """Each <Z_j> from its light cone alone (3 wires at L = 1, 7 at L = 2), outputs and both gradients."""
    spec = VQCSpec(n, layers)
    h, theta, w = inputs(spec, 3, seed=n)
    ref = outputs_and_grads(make_circuit(spec, "pennylane", "default.qubit"), h, theta, w)
    ours = outputs_and_grads(make_circuit(spec, "torch", mode="cone"), h, theta, w)
    for name, a, b in zip(["<Z>", "d/dh", "d/dtheta"], ours, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=name)


def test_quadratic_forms_of_product_states_in_trig_features_by_brute_force() -> None:
    """s^T M s = C . features(h) for s = (x)_w RY(h_w)|0>, against the sum over all 2^c x 2^c terms."""
    g = torch.Generator().manual_seed(3)
    c, rows = 3, 6
    m = torch.randn(2, 2**c, 2**c, generator=g, dtype=torch.float64)  # any M: the map needs no symmetry
    h = torch.randn(rows, c, generator=g, dtype=torch.float64) * 3
    states = torch.stack([torch.cos(h / 2), torch.sin(h / 2)], -1)  # [rows, c, 2]
    amplitude = [
        [math.prod(float(states[r, w, (x >> (c - 1 - w)) & 1]) for w in range(c)) for x in range(2**c)]
        for r in range(rows)
    ]
    for k in range(2):
        brute = [
            sum(amplitude[r][a] * float(m[k, a, b]) * amplitude[r][b] for a in range(2**c) for b in range(2**c))
            for r in range(rows)
        ]
        ours = quadratic_to_trig(m[k]) @ trig_features_t(h)
        torch.testing.assert_close(ours, torch.tensor(brute, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(quadratic_to_trig(m)[1], quadratic_to_trig(m[1]))  # leading dims


def test_light_cones_widen_by_one_wire_per_crz_run() -> None:
    """L layers leave 2L - 1 CRZ runs (the last is dropped); each widens the cone by a wire on each side, as a
    run (its gates commute), not as a chain around the ring."""
    for layers, width in [(1, 3), (2, 7), (3, 11)]:
        cones = light_cones(VQCSpec(12, layers))
        assert cones.center == (width - 1) // 2 and {p.n for p in cones.plans} == {width}
        assert len(cones.plans) == 12
    assert light_cones(VQCSpec(6, 2)) is None  # 7 > 6: the whole register
    assert light_cones(VQCSpec(12, 1, reupload=True)) is None
    with pytest.raises(ValueError, match="light cone is the whole register"):
        simulate(torch.zeros(2, 4), torch.zeros(2, 4, 4), VQCSpec(4, 2), "cone")


def test_plan_folds_the_first_rotation_and_drops_the_last_ring() -> None:
    spec = VQCSpec(4, 3)
    plan = compile_plan(spec)
    assert plan.encode == ((0, 1, 2, 3), (0, 1, 2, 3))  # RY(h_i) RY(theta[0, 0, i]) as one rotation
    assert plan.steps[0][0] == "phase" and plan.steps[-1][0] == "ry"  # no phase right before the measurement
    assert len(plan.ry) == 2 * 3 - 1 and len(plan.phase_index) == 2 * 3 - 1
    reupload = compile_plan(VQCSpec(4, 3, reupload=True))
    assert [kind for kind, _ in reupload.steps].count("row") == 2  # RY(h) RY(a_k) folded for k = 1, 2


@pytest.mark.parametrize("mode,n", [("gates", 5), ("fused", 5), ("cone", 8)])
def test_bfloat16_runs_close_to_float64(mode: str, n: int) -> None:
    spec = VQCSpec(n, 2)
    h, theta, _ = inputs(spec, 4)
    low = simulate(h.bfloat16(), theta.bfloat16(), spec, mode)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.double(), simulate(h, theta, spec, mode), atol=0.05, rtol=0)


def test_choose_mode() -> None:
    assert choose_mode(VQCSpec(8, 2), 8192) == "cone"  # 7 of 8 wires, but 3^7 features against 2 x 4^8 per row
    assert choose_mode(VQCSpec(8, 2), 1024) == "fused"  # fewer rows: the cones' circuits cost more than they save
    assert choose_mode(VQCSpec(10, 2), 8192) == "cone"  # 7-wire cones: ~1/10 of the fused mode's flops
    assert choose_mode(VQCSpec(10, 10), 8192) == "fused"  # the cone is the whole register
    assert choose_mode(VQCSpec(4, 10), 8192) == "fused"
    assert choose_mode(VQCSpec(10, 2), 4) == "gates"  # few rows: building the 2^n-square matrix costs more
    assert choose_mode(VQCSpec(4, 2, reupload=True), 8192) == "gates"


def test_tables_first_built_under_inference_mode_still_train() -> None:
    """A validation (inference mode) before training builds the cached tables first; training must still work."""
    from quantum_ft.quantum.circuit import VQCSpec
    from quantum_ft.quantum.vqc import simulate

    spec = VQCSpec(3, 2)
    with torch.inference_mode():
        simulate(torch.rand(4, 3, dtype=torch.float64), torch.rand(2, 4, 3, dtype=torch.float64), spec)
    theta = torch.rand(2, 4, 3, dtype=torch.float64, requires_grad=True)
    simulate(torch.rand(4, 3, dtype=torch.float64), theta, spec).sum().backward()
    assert theta.grad is not None and torch.isfinite(theta.grad).all()


@pytest.mark.parametrize("mode, n, layers", [("fused", 4, 2), ("fused", 7, 2), ("cone", 8, 2)])
def test_trains_under_bfloat16_autocast(mode: str, n: int, layers: int) -> None:
    """bf16-mixed training runs the engine under autocast: its written-out backwards must hand float32 gradients
    back to float32 angles (a bfloat16 index_put once stopped every vqc/tq run at this point), and give the same
    gradients whether backward() is called inside autocast or, as PyTorch advises, after it (their bfloat16
    products against float32 tables once failed there)."""
    spec = VQCSpec(n, layers)
    h0 = torch.rand(16, n).bfloat16()  # activations in bf16, the trained angles in float32
    theta0 = torch.rand(spec.weight_shape)
    grads = []
    for backward_inside in (True, False):
        h, theta = h0.clone().requires_grad_(True), theta0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = simulate(h, theta, spec, mode)
            if backward_inside:
                out.sum().backward()
        if not backward_inside:
            out.sum().backward()
        grads.append((h.grad, theta.grad))
    reference = outputs_and_grads(lambda a, b: simulate(a, b, spec, mode), h0.float(), theta0, 1.0)
    (h_in, theta_in), (h_out, theta_out) = grads
    assert theta_in.dtype == torch.float32 and torch.allclose(theta_in, reference[2], atol=0.1 * n)
    assert torch.equal(theta_in, theta_out) and torch.equal(h_in, h_out)


def second_order(fn, h0: torch.Tensor, theta0: torch.Tensor, weights: torch.Tensor):
    """Gradients of |d<Z>/dh|^2 + |d<Z>/dtheta|^2 (weighted <Z>): backward(create_graph=True), then backward again."""
    h, theta = h0.clone().requires_grad_(True), theta0.clone().requires_grad_(True)
    first = torch.autograd.grad((fn(h, theta) * weights).sum(), (h, theta), create_graph=True)
    return torch.autograd.grad(sum(g.square().sum() for g in first), (h, theta))


@pytest.mark.parametrize("mode, n, layers", [("fused", 4, 2), ("fused", 7, 1), ("cone", 8, 2), ("gates", 3, 2)])
def test_second_derivatives_match_pennylane(mode: str, n: int, layers: int) -> None:
    """The written-out backwards are not differentiable themselves: under backward(create_graph=True) autograd
    differentiates the forward's ops instead. Before, second derivatives were silently wrong in the cone mode and
    fused above 6 wires, and failed at small n."""
    spec = VQCSpec(n, layers)
    h, theta, w = inputs(spec, 3, seed=n)
    ours = second_order(lambda a, b: simulate(a, b, spec, mode), h, theta, w)
    reference = second_order(make_circuit(spec, "pennylane", "default.qubit"), h, theta, w)
    for name, a, b in zip(["d/dh", "d/dtheta"], ours, reference):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0, msg=f"{mode} second-order {name}")


def test_fused_mode_says_what_it_needs() -> None:
    """Re-uploaded data cannot be fused (the error names the mode that runs it); a plan whose wires read h out of
    order is refused rather than simulated wrongly (every VQCSpec encodes column i on wire i)."""
    spec = VQCSpec(3, 2, reupload=True)
    with pytest.raises(ValueError, match="use mode 'gates'"):
        simulate(torch.zeros(2, 3), torch.zeros(spec.weight_shape), spec, "fused")
    swapped = dataclasses.replace(compile_plan(VQCSpec(3, 1)), encode=((1, 0, 2), (0, 1, 2)))
    with pytest.raises(ValueError, match=r"wire i to encode column i of h; got \(1, 0, 2\)"):
        _encoded_in_order(swapped)
