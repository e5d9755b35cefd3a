"""The circuit engine against PennyLane, circuit invariants, and the vqc / tq / quanta adapters."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from quantum_ft.adapters.quanta import QuanTAConfig, QuanTALinear, apply_gates, num_parameters
from quantum_ft.adapters.tq import TQConfig
from quantum_ft.adapters.vqc import VQCConfig
from quantum_ft.quantum import BACKENDS, VQCSpec, circuit_gates, make_circuit, to_qasm3
from quantum_ft.quantum.classical_twin import classical_twin
from quantum_ft.quantum.vqc import simulate
from tests.helpers import tiny_model

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def outputs_and_grads(circuit, h0: torch.Tensor, theta0: torch.Tensor, weights: torch.Tensor):
    h, theta = h0.clone().requires_grad_(True), theta0.clone().requires_grad_(True)
    z = circuit(h, theta)
    (z * weights).sum().backward()
    return z.detach(), h.grad, theta.grad


# ---------------------------------------------------------------- parity with PennyLane
@pytest.mark.parametrize("device", ["default.qubit", "lightning.qubit"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,layers,reupload", [(3, 1, False), (4, 2, True), (5, 3, False)])
def test_torch_engine_matches_pennylane(device: str, dtype: torch.dtype, n: int, layers: int, reupload: bool) -> None:
    g = torch.Generator().manual_seed(n * 10 + layers)
    spec = VQCSpec(n, layers, reupload)
    h = torch.randn(4, n, generator=g, dtype=torch.float64).to(dtype)
    theta = (torch.rand(spec.weight_shape, generator=g, dtype=torch.float64) * 2 * math.pi).to(dtype)
    weights = torch.randn(4, n, generator=g, dtype=torch.float64).to(dtype)
    ref = outputs_and_grads(make_circuit(spec, "pennylane", device), h, theta, weights)
    modes = ["gates"] if reupload else ["gates", "fused"]
    for mode in modes:
        ours = outputs_and_grads(make_circuit(spec, "torch", mode=mode), h, theta, weights)
        for name, a, b in zip(["<Z>", "d/dh", "d/dtheta"], ours, ref):
            assert a.dtype == dtype
            torch.testing.assert_close(a, b.to(dtype), atol=TOL[dtype], rtol=0, msg=f"{mode} {name}")


# ---------------------------------------------------------------- invariants
def test_crz_order_within_a_ring_does_not_matter() -> None:
    """PennyLane with each ring applied in reverse order gives our (order-free, diagonal) result."""
    spec = VQCSpec(4, 2)
    reversed_spec = VQCSpec(4, 2)
    object.__setattr__(reversed_spec, "ring_forward", lambda: VQCSpec.ring_forward(spec)[::-1])
    object.__setattr__(reversed_spec, "ring_backward", lambda: VQCSpec.ring_backward(spec)[::-1])
    h = torch.randn(3, 4, dtype=torch.float64)
    theta = torch.rand(spec.weight_shape, dtype=torch.float64) * 6
    ref = make_circuit(reversed_spec, "pennylane", "default.qubit")(h, theta)
    torch.testing.assert_close(simulate(h, theta, spec), ref, atol=1e-12, rtol=0)


def test_first_layer_rotation_adds_to_the_encoding() -> None:
    spec = VQCSpec(4, 2)
    h = torch.randn(5, 4, dtype=torch.float64)
    theta = torch.rand(spec.weight_shape, dtype=torch.float64) * 6
    shifted, folded = theta.clone(), h + theta[0, 0]
    shifted[0, 0] = 0.0  # RY(h) RY(a) == RY(h + a)
    torch.testing.assert_close(simulate(h, theta, spec), simulate(folded, shifted, spec), atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["gates", "fused"])
def test_last_ring_before_measurement_gets_no_gradient(mode: str) -> None:
    spec = VQCSpec(5, 3)
    h = torch.randn(6, 5, dtype=torch.float64)
    theta = (torch.rand(spec.weight_shape, dtype=torch.float64) * 6).requires_grad_(True)
    simulate(h, theta, spec, mode).sum().backward()
    assert theta.grad[-1, 3].abs().max() < 1e-12  # a diagonal phase right before a Z measurement
    assert theta.grad[-1, 1].abs().max() > 1e-6  # while an earlier ring does matter


# ---------------------------------------------------------------- adapters on real model classes
def qwen_0_5b_shaped() -> Qwen2ForCausalLM:
    """Qwen2.5-0.5B's attention shapes (hidden 896, 14 heads, 2 KV heads, 24 layers) with a tiny MLP/vocab."""
    config = Qwen2Config(
        hidden_size=896,
        num_attention_heads=14,
        num_key_value_heads=2,
        num_hidden_layers=24,
        intermediate_size=8,
        vocab_size=16,
    )
    return Qwen2ForCausalLM(config)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_match_the_reference() -> None:
    """adapters.md: n=10, L=10 vqc on q/v of Qwen2.5-0.5B has 695,040 parameters; LoRA r=8 has 540,672."""
    assert (
        trainable(
            get_peft_model(qwen_0_5b_shaped(), VQCConfig(n_qubits=10, n_layers=10, target_modules=["q_proj", "v_proj"]))
        )
        == 695_040
    )
    assert (
        trainable(get_peft_model(qwen_0_5b_shaped(), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))) == 540_672
    )
    assert num_parameters([16, 8, 4, 2]) == 22_848 and num_parameters([16, 8, 8, 4]) == 43_008


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    """conf/model/tiny.yaml 48 wide (quanTA's [4, 4, 3] factors it exactly)."""
    return tiny_model(seed=seed, hidden_size=48, intermediate_size=32)


CONFIGS = {
    "vqc": lambda: VQCConfig(n_qubits=3, n_layers=2, target_modules=["q_proj", "v_proj"]),
    "vqc_reupload": lambda: VQCConfig(n_qubits=3, n_layers=2, reupload=True, target_modules=["q_proj", "v_proj"]),
    "tq": lambda: TQConfig(n_qubits=3, n_layers=2, target_modules=["q_proj", "v_proj"]),
    "vqc_classical": lambda: VQCConfig(
        n_qubits=3, n_layers=2, backend="classical", target_modules=["q_proj", "v_proj"]
    ),
    "quanta": lambda: QuanTAConfig(per_dim_features=[4, 4, 3], target_modules=["q_proj", "v_proj"]),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_zero_update_at_start_then_save_load_round_trip(name: str, tmp_path) -> None:
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        base_logits = tiny_llama()(input_ids=ids).logits
        model = get_peft_model(tiny_llama(), CONFIGS[name]())
        assert torch.equal(model(input_ids=ids).logits, base_logits), "the update must be exactly zero at start"
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
        trained_logits = model(input_ids=ids).logits
        assert not torch.allclose(trained_logits, base_logits, atol=1e-4)
        model.save_pretrained(tmp_path)
        loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path).eval()
        torch.testing.assert_close(loaded(input_ids=ids).logits, trained_logits, atol=0, rtol=0)
    prefix = "quanta_" if name == "quanta" else name.split("_")[0] + "_"
    assert trainable(model) > 0 and all(prefix in n for n, p in model.named_parameters() if p.requires_grad)


def test_reference_init_starts_with_a_nonzero_update() -> None:
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        base = tiny_llama()(input_ids=ids).logits
        model = get_peft_model(tiny_llama(), VQCConfig(n_qubits=3, init="reference", target_modules=["q_proj"]))
        assert not torch.allclose(model(input_ids=ids).logits, base, atol=1e-4)


def dense_reference(gates: list[torch.Tensor], dims: list[int]) -> torch.Tensor:
    """M(theta) as a dense [N, N] matrix from the official D=4 einsum (adapters.md), independent of apply_gates."""
    t = [
        g.reshape(dims[a], dims[b], dims[a], dims[b])
        for g, (a, b) in zip(gates, [(2, 3), (1, 3), (0, 3), (1, 2), (0, 2), (0, 1)])
    ]
    n = math.prod(dims)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *dims)
    out = torch.einsum("...abcd,ghcd,flbh,epal,jkfg,ioek,mnij->...mnop", eye, *t)
    return out.reshape(n, n).T  # column j = M e_j


def test_quanta_layer_is_the_cropped_dense_difference() -> None:
    dims = [4, 3, 2, 2]  # N = 48 for a 40 -> 20 layer: pad the input, crop the output
    base = torch.nn.Linear(40, 20).double()
    layer = QuanTALinear(base, "default", QuanTAConfig(per_dim_features=dims, target_modules=["x"])).double()
    x = torch.randn(5, 40, dtype=torch.float64)  # fewer rows than inputs: the two chains on the rows
    many = torch.randn(64, 40, dtype=torch.float64)  # more: the dense update from the identity
    assert torch.equal(layer.delta("default", x), torch.zeros(5, 20, dtype=torch.float64))
    assert torch.equal(layer.delta("default", many), torch.zeros(64, 20, dtype=torch.float64))
    with torch.no_grad():
        for p in layer.quanta_gates["default"]:
            p.add_(0.05 * torch.randn_like(p))
    gates = [p.detach() for p in layer.quanta_gates["default"]]
    frozen = layer._frozen("default")
    update = (dense_reference(gates, dims) - dense_reference(frozen, dims))[:20, :40]
    torch.testing.assert_close(layer.delta("default", x), x @ update.T, atol=1e-10, rtol=0)
    torch.testing.assert_close(layer.delta("default", many), many @ update.T, atol=1e-10, rtol=0)
    torch.testing.assert_close(
        apply_gates(torch.eye(48, dtype=torch.float64), gates, dims), dense_reference(gates, dims).T, atol=1e-10, rtol=0
    )
    # generically full rank: min(d_in, d_out)
    assert torch.linalg.matrix_rank(layer.get_delta_weight("default")) == 20


def test_quanta_merge_keeps_the_function() -> None:
    ids = torch.randint(0, 64, (2, 7))
    model = get_peft_model(tiny_llama(), CONFIGS["quanta"]())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        before = model(input_ids=ids).logits
        merged = model.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: get_peft_model(tiny_llama(), VQCConfig(n_qubits=64, target_modules=["q_proj"])), "n_qubits=64"),
        (lambda: VQCConfig(n_qubits=25, target_modules=["q_proj"]), "between 2 and 20"),
        (lambda: VQCConfig(n_qubits=1, target_modules=["q_proj"]), "one wire has no neighbour"),
        (lambda: VQCSpec(1, 2), "one wire has no neighbour"),
        (lambda: VQCConfig(backend="qiskit", target_modules=["q_proj"]), "backend='qiskit'"),
        (
            lambda: get_peft_model(tiny_llama(), QuanTAConfig(per_dim_features=[4, 4], target_modules=["q_proj"])),
            "multiply to 16",
        ),
        (lambda: QuanTAConfig(per_dim_features=[4, 4, 4], q_d=4, target_modules=["q_proj"]), "q_d=4"),
        (lambda: TQConfig(reupload=True, target_modules=["q_proj"]), "encodes the input once"),
        (lambda: VQCConfig(mode="cone", n_qubits=4, n_layers=2, target_modules=["q_proj"]), "a cone is all of it"),
    ],
)
def test_bad_settings_are_explained(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_lightning_gpu_without_gpu_is_refused() -> None:
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        make_circuit(VQCSpec(2, 1), "pennylane", "lightning.gpu")


def test_vqc_cannot_be_merged_and_says_why() -> None:
    model = get_peft_model(tiny_llama(), CONFIGS["vqc"]())
    with pytest.raises(TypeError, match="non-linear"):
        model.merge_and_unload()


ENGINE_OF = {name: ("torch", "default.qubit") if name == "torch" else ("pennylane", name) for name in BACKENDS}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_registered_backend_gives_the_same_outputs_and_grads(name: str) -> None:
    """The same adapter weights on each backend of the registry: the loss and every gradient agree with our
    torch engine to 1e-9 in float64."""
    backend = BACKENDS[name]
    if not backend.available():
        pytest.skip(f"{name} needs CUDA")
    assert torch.float64 in backend.dtypes and backend.gradients in {"backprop", "adjoint"}
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))

    def loss_and_grads(engine: str, device: str):
        config = VQCConfig(
            n_qubits=3,
            n_layers=2,
            init="reference",
            backend=engine,
            device=device,
            circuit_dtype="float64",
            target_modules=["q_proj"],
        )
        torch.manual_seed(1)  # same adapter weights on every backend
        model = get_peft_model(tiny_llama().double(), config)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    reference_loss, reference_grads = loss_and_grads("torch", "default.qubit")
    loss, grads = loss_and_grads(*ENGINE_OF[name])
    torch.testing.assert_close(loss, reference_loss, atol=1e-10, rtol=0)
    assert grads.keys() == reference_grads.keys()
    for key, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[key], atol=1e-9, rtol=0, msg=key)


@pytest.mark.parametrize("n,layers,reupload", [(2, 1, False), (3, 2, True), (4, 2, False)])
def test_the_qasm_export_of_the_gate_list_simulates_like_the_engine(n: int, layers: int, reupload: bool) -> None:
    """qiskit (an independent simulator) reads the OpenQASM 3 written from the gate list and gives the engine's
    <Z_i> to 1e-9: the circuit described once is the circuit every backend runs."""
    from qiskit.qasm3 import loads
    from qiskit.quantum_info import SparsePauliOp, Statevector

    spec = VQCSpec(n, layers, reupload)
    g = torch.Generator().manual_seed(n)
    h = torch.rand(1, n, generator=g, dtype=torch.float64) * 3
    theta = torch.rand(spec.weight_shape, generator=g, dtype=torch.float64) * 6
    circuit = loads(to_qasm3(spec, theta.tolist(), digits=15))
    bound = circuit.assign_parameters({p: float(h[0, int(p.name[1:])]) for p in circuit.parameters})
    state = Statevector(bound)
    # qiskit numbers qubit 0 as the least significant bit; <Z_i> is read per qubit, so order does not matter
    z = [state.expectation_value(SparsePauliOp("I" * (n - 1 - i) + "Z" + "I" * i)).real for i in range(n)]
    torch.testing.assert_close(torch.tensor([z], dtype=torch.float64), simulate(h, theta, spec), atol=1e-9, rtol=0)
    assert sum(line.startswith(("ry(", "crz(")) for line in to_qasm3(spec).splitlines()) == len(circuit_gates(spec))


def test_classical_twin_against_a_scalar_loop() -> None:
    """quantum/classical_twin.py's formula, wire by wire in plain Python (neighbours i+1 and i-1 mod n)."""
    spec = VQCSpec(5, 3)
    g = torch.Generator().manual_seed(0)
    x, theta = (
        torch.randn(4, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 4, 5, generator=g, dtype=torch.float64),
    )
    got = classical_twin(spec)(x, theta)
    for r in range(4):
        h = [math.cos(float(v)) for v in x[r]]
        for k in range(3):
            w = [[math.sin(float(theta[k, j, i])) for i in range(5)] for j in range(4)]
            h = [
                math.tanh(w[0][i] * h[i] + w[1][i] * h[(i + 1) % 5] + w[2][i] * h[(i - 1) % 5] + w[3][i])
                for i in range(5)
            ]
        torch.testing.assert_close(got[r], torch.tensor(h, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_classical_control_has_the_circuits_parameters_and_a_different_function() -> None:
    ids = torch.randint(0, 64, (2, 7))
    quantum = get_peft_model(tiny_llama(), CONFIGS["vqc"]())
    control = get_peft_model(tiny_llama(), CONFIGS["vqc_classical"]())
    assert trainable(quantum) == trainable(control)
    with torch.no_grad():
        for p in quantum.parameters():
            if p.requires_grad:
                p.add_(0.1)
        control.load_state_dict(quantum.state_dict())  # the same weights, every one
        assert not torch.allclose(quantum(input_ids=ids).logits, control(input_ids=ids).logits, atol=1e-5)
