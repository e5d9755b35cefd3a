"""Exact simulation in torch of the `vqc` / `tq` circuit (its gates: quantum/circuit.py), batched over rows.

The gate list is compiled once per spec into a plan of layers (compile_plan):
  - consecutive RY gates commute (distinct wires, or one axis on one wire), so a run of them is one layer of
    per-wire angles, summed where two fall on one wire: RY(h) RY(a) = RY(h + a), which folds the first trained
    RY layer (and every re-uploaded encoding) into the data's rotation;
  - CRZ gates are diagonal, so a run of them is one phase per basis state, and a run right before the Z
    measurement cannot change <Z> and is dropped (its angles get an exactly zero gradient);
  - the first layer acts on |0...0>, so it is a product state: a tree of n - 1 outer products.
The state is kept in real arithmetic, (real, imaginary) parts, so it works in bfloat16 too: an RY layer is a real
matrix per block of <= BLOCK wires (a tree of Kronecker products, built for all layers at once), a phase run a
(cos, sin) per basis state (all runs from one product of angles and a sign table). Three exact evaluation modes:
  - "gates": apply the layers to the batch of encoded states (cost ~ rows * 2^n * layers * 2^BLOCK); a shared
    block is one plain matrix product on the fastest-varying wires followed by a transposing copy that rotates
    the next block into that place;
  - "fused": when the data enters only in the first layer, build the rest of the circuit once per call as one
    real matrix [2^n, 2 * 2^n] (real | imaginary part of the output for a real input) and multiply the batch of
    product states by it in one matrix product (cost ~ rows * 2 * 4^n, which dominates from n ~ 8). Up to
    DENSE_QUBITS wires that matrix is a chain of dense factors, one per RY layer and its following phase, all
    built at once (a few dozen tensor ops whatever the depth: at small n the cost is per-op overhead, so the
    whole call is one autograd function, _SmallCircuit, whose backward is written out with the wire-flip rule
    of Flips for the chain's RY angles and the product state's); above, the layers are applied to the 2^n
    basis states as in the gate path.
  - "cone": when every wire's backward light cone is narrower than the register (shallow circuits on many
    wires: each CRZ run widens it by one wire a side), each <Z_j> comes from its cone alone, in the Heisenberg
    picture: the cone's circuit as a dense matrix, the observable M_j it makes of Z_j, and psi^T M_j psi on the
    cone's product state (cost ~ rows * n * 4^c for cones of c wires instead of rows * 2 * 4^n).
choose_mode picks among them by a cost estimate. The written-out backwards run under their forward's autocast state,
and under backward(create_graph=True) hand over to autograd on the forward's ops, so second derivatives are exact
in every mode (slower; the gate path is autograd throughout).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, wraps

import torch

from quantum_ft.quantum.circuit import Gate, VQCSpec, circuit_gates

MODES = ("auto", "gates", "fused", "cone")
BLOCK = 5  # at most this many wires per Kronecker block of an RY layer (32 x 32 matrices)
DENSE_QUBITS = 6  # up to this width the fused mode multiplies dense 2^(n+1)-square factors (few ops)


@dataclass(frozen=True)
class Plan:
    """The circuit as the engine runs it: the encoding layer (per row), then shared steps.

    Angles are given per wire as a column of h and/or a flat index into theta (-1: none, angle 0); a wire's angle
    is the sum of both. `steps` are ("ry", j): shared RY layer j; ("row", j): per-row RY layer j (re-uploading);
    ("phase", j): CRZ run j."""

    n: int
    encode: tuple[tuple[int, ...], tuple[int, ...]]
    steps: tuple[tuple[str, int], ...]
    ry: tuple[tuple[int, ...], ...]
    rows: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    phase_index: tuple[tuple[int, ...], ...]
    phase_pairs: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def per_row(self) -> bool:
        return any(kind == "row" for kind, _ in self.steps)


def _flat(index: tuple[int, ...], n: int) -> int:
    """Position of theta[k, j, i] in theta.flatten()."""
    k, j, i = index
    return (k * 4 + j) * n + i


@lru_cache(maxsize=64)
def compile_plan(spec: VQCSpec) -> Plan:
    """Merge the gate list into RY layers and CRZ runs, fold, and drop the final diagonal run (see module doc)."""
    return _compile(spec.n_qubits, _trimmed_gates(spec), spec.n_qubits)


def _trimmed_gates(spec: VQCSpec) -> tuple[Gate, ...]:
    """The gate list without its final run of CRZ gates: diagonal right before a Z measurement, no effect on <Z>."""
    gates = circuit_gates(spec, with_encoding=True)
    while gates and gates[-1].name == "crz":
        gates.pop()
    return tuple(gates)


def _compile(width: int, gates: tuple[Gate, ...], n: int) -> Plan:
    """The plan of `gates` on wires 0..width-1; their angles index h and theta of a spec of n qubits (width < n
    for a light cone, whose wires are renumbered but read the spec's angles)."""
    layers: list[list] = []  # ["ry", h column per wire, theta index per wire] | ["crz", pairs, theta indices]
    for g in gates:
        last = layers[-1] if layers else None
        if g.name == "ry":
            slot, value = (1, g.index[0]) if g.source == "input" else (2, _flat(g.index, n))
            if last is None or last[0] != "ry" or last[slot][g.wires[0]] != -1:
                last = ["ry", [-1] * width, [-1] * width]
                layers.append(last)
            last[slot][g.wires[0]] = value
        else:
            if last is None or last[0] != "crz":
                last = ["crz", [], []]
                layers.append(last)
            last[1].append(tuple(g.wires))
            last[2].append(_flat(g.index, n))
    encode = ((-1,) * width, (-1,) * width)
    if layers and layers[0][0] == "ry":
        encode = (tuple(layers[0][1]), tuple(layers[0][2]))
        layers = layers[1:]
    steps, ry, rows, phase_index, phase_pairs = [], [], [], [], []
    for kind, a, b in layers:
        if kind == "crz":  # a run's gates commute: in a canonical order, so equal structures compare equal
            pairs, index = zip(*sorted(zip(a, b))) if a else ((), ())
            steps.append(("phase", len(phase_index)))
            phase_index.append(tuple(index))
            phase_pairs.append(tuple(pairs))
        elif any(c >= 0 for c in a):
            steps.append(("row", len(rows)))
            rows.append((tuple(a), tuple(b)))
        else:
            steps.append(("ry", len(ry)))
            ry.append(tuple(b))
    return Plan(width, encode, tuple(steps), tuple(ry), tuple(rows), tuple(phase_index), tuple(phase_pairs))


def _normal_tensors(build):
    """Cached constant tensors made as normal tensors even when first asked for under torch.inference_mode (a
    validation before training): an inference tensor cannot be saved for a later backward."""

    def make(*args):
        with torch.inference_mode(False), torch.no_grad():
            return build(*args)

    return make


@lru_cache(maxsize=32)
@_normal_tensors
def _bits(n: int, device: torch.device) -> torch.Tensor:
    """bits[x, i] = value of wire i in basis state x (wire 0 = most significant bit)."""
    x = torch.arange(2**n, device=device)
    shifts = torch.arange(n - 1, -1, -1, device=device)
    return (x[:, None] >> shifts[None, :]) & 1


def product_state(angles: torch.Tensor) -> torch.Tensor:
    """prod_i RY(angles_i)|0>: real amplitudes [rows, 2^k] for angles [rows, k], as a tree of outer products
    (k - 1 elementwise products), computed with rows as the fastest axis (long vectorised loops; a gather + prod
    over bits, or rows first, costs several times more at small k) and returned as a transposed view."""
    return product_state_t(angles).T


def product_state_t(angles: torch.Tensor) -> torch.Tensor:
    """product_state's amplitudes as they are computed: [2^k, rows] for angles [rows, k], rows contiguous."""
    half = angles.T / 2
    return _kron_rows(list(torch.stack([torch.cos(half), torch.sin(half)], 1).unbind(0)))  # [2, rows] per wire


def trig_per_wire(angles_t: torch.Tensor) -> torch.Tensor:
    """(1, cos, sin) of angles [..., wires, rows]: [..., wires, 3, rows], the per-wire factors of the trig features."""
    return torch.stack([torch.ones_like(angles_t), torch.cos(angles_t), torch.sin(angles_t)], -2)


def trig_features_t(angles: torch.Tensor) -> torch.Tensor:
    """prod_w f_{k_w}(angle_w) for every k in {0, 1, 2}^k, f = (1, cos, sin): [3^k, rows] for angles [rows, k]
    (wire 0 the most significant digit). A product state's quadratic forms are linear in these."""
    return _kron_rows(list(trig_per_wire(angles.T).unbind(0)))


def _kron_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """The Kronecker product of per-wire vectors [..., d, rows] (rows fastest), as a tree of outer products."""
    while len(parts) > 1:
        pairs = zip(parts[0::2], parts[1::2])
        merged = [(a[..., :, None, :] * b[..., None, :, :]).flatten(-3, -2) for a, b in pairs]
        parts = merged + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def ry_matrix(angles: torch.Tensor) -> torch.Tensor:
    """RY(angles[..., 0]) x ... x RY(angles[..., k-1]) for row vectors (state @ matrix applies it): [..., 2^k, 2^k],
    wire order MSB first, as a tree of Kronecker products. Entry [y, x] = prod_i RY_i[x_i, y_i]."""
    c, s = torch.cos(angles / 2), torch.sin(angles / 2)
    mats = torch.stack([c, s, -s, c], -1).unflatten(-1, (2, 2))  # [..., k, 2, 2], the transposes of RY
    parts = list(mats.unbind(-3))
    while len(parts) > 1:
        pairs = zip(parts[0::2], parts[1::2])
        merged = [
            (a[..., :, None, :, None] * b[..., None, :, None, :]).flatten(-4, -3).flatten(-2, -1) for a, b in pairs
        ]
        parts = merged + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def _blocks(n: int) -> list[tuple[int, int]]:
    """(first wire, width) of the Kronecker blocks of an RY layer: few, nearly equal, at most BLOCK wide."""
    count = -(-n // BLOCK)
    widths = [n // count + (i < n % count) for i in range(count)]
    return [(sum(widths[:i]), w) for i, w in enumerate(widths)]


@dataclass(frozen=True)
class Chain:
    """The dense chain's tables: per factor (an RY layer and the phase run after it, _factor_rows) the layer's
    angle indices and the run's, with leading dims per light cone in the cone mode."""

    ry: torch.Tensor  # [..., factors, n]
    phase_index: torch.Tensor  # [..., factors, gates]
    phase_coef: torch.Tensor  # [factors, gates, 2^n]


@dataclass(frozen=True)
class Tables:
    """The plan's index and sign tensors on one device and dtype (cached)."""

    encode_h: torch.Tensor  # [n] into h padded with a zero column
    encode_w: torch.Tensor  # [n] into theta flattened and padded with a zero
    ry: torch.Tensor  # [layers + 1, n]; the last row is all zero angles (identity)
    rows_h: torch.Tensor  # [row layers, n]
    rows_w: torch.Tensor
    phase_index: torch.Tensor  # [runs + 1, gates]; the last row is no phase
    phase_coef: torch.Tensor  # [runs + 1, gates, 2^n]: phase of basis state x = sum_g coef[g, x] angle_g
    signs2: torch.Tensor  # [2 * 2^n, n]: <Z_i> = (re^2, im^2) @ signs2
    chain: Chain  # the same rows per factor of the dense chain


@lru_cache(maxsize=64)
@_normal_tensors
def _tables(spec: VQCSpec, device: torch.device, dtype: torch.dtype) -> Tables:
    return _plan_tables(compile_plan(spec), spec, device, dtype)


def _plan_tables(plan: Plan, spec: VQCSpec, device: torch.device, dtype: torch.dtype) -> Tables:
    """Tables of a plan on plan.n wires whose angles index the spec's h and theta (padded: see _padded)."""
    n, width = spec.n_qubits, plan.n
    zero_w = n * 4 * spec.n_layers  # index of the zero appended to theta.flatten()

    def idx(values, zero: int) -> list[int]:
        return [v if v >= 0 else zero for v in values]

    def tensor(rows: list, columns: int) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=device).reshape(-1, columns)

    gates = max((len(p) for p in plan.phase_index), default=1)
    bits = _bits(width, device).to(dtype)
    coef = torch.zeros(len(plan.phase_index) + 1, gates, 2**width, dtype=dtype, device=device)
    phase_index = []
    for j, (index, pairs) in enumerate(zip(plan.phase_index, plan.phase_pairs)):
        # CRZ(t) = diag(1, 1, e^{-it/2}, e^{it/2}): a phase of -+t/2 when the control is 1 (target 0 / 1)
        for g, (control, target) in enumerate(pairs):
            coef[j, g] = bits[:, control] * (2 * bits[:, target] - 1) / 2
        phase_index.append(list(index) + [zero_w] * (gates - len(index)))
    phase_index.append([zero_w] * gates)
    signs = 1 - 2 * bits
    ry = tensor([idx(r, zero_w) for r in plan.ry] + [[zero_w] * width], width)
    phases = tensor(phase_index, gates)
    ry_rows, phase_rows = (list(rows) for rows in _factor_rows(plan))
    return Tables(
        encode_h=tensor(idx(plan.encode[0], n), width)[0],
        encode_w=tensor(idx(plan.encode[1], zero_w), width)[0],
        ry=ry,
        rows_h=tensor([idx(h, n) for h, _ in plan.rows], width),
        rows_w=tensor([idx(w, zero_w) for _, w in plan.rows], width),
        phase_index=phases,
        phase_coef=coef,
        signs2=torch.cat([signs, signs]),
        chain=Chain(ry[ry_rows], phases[phase_rows], coef[phase_rows]),
    )


def _theta_padded(theta: torch.Tensor) -> torch.Tensor:
    """theta flattened with a zero after it: index -1 of the plan reads angle 0."""
    return torch.cat([theta.reshape(-1), theta.new_zeros(1)])


def _padded(h: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h with a zero column, and _theta_padded(theta)."""
    return torch.cat([h, h.new_zeros(h.shape[0], 1)], 1), _theta_padded(theta)


def _phases(tables: Tables, theta_pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of every CRZ run's phase per basis state, [runs + 1, 2^n] each (the gate path's; the dense chain
    keeps _phase_angles' shape for its factors)."""
    phase = _phase_angles(theta_pad, tables.phase_index, tables.phase_coef).squeeze(-2)
    return torch.cos(phase), torch.sin(phase)


def _phase_angles(theta_pad: torch.Tensor, phase_index: torch.Tensor, phase_coef: torch.Tensor) -> torch.Tensor:
    """Each CRZ run's phase per basis state, [..., runs, 1, 2^n]: its angles (phase_index) times their signs on each
    basis state (phase_coef), as one product."""
    return theta_pad[phase_index].unsqueeze(-2) @ phase_coef


def apply_phase(state: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Multiply by e^{i phase}: state [rows, 2^n] (real) or [2, rows, 2^n] (real, imaginary) -> [2, rows, 2^n]."""
    if state.dim() == 2:
        return state[None] * torch.stack([cos, sin])[:, None, :]
    return torch.addcmul(state * cos, state.flip(0), torch.stack([-sin, sin])[:, None, :])


def ry_blocks(angles: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The Kronecker blocks of RY layers: angles [..., n] -> one [..., 2^k, 2^k] per block (see _blocks)."""
    return [ry_matrix(angles[..., start : start + k]) for start, k in _blocks(n)]


def apply_ry(state: torch.Tensor, blocks: list[torch.Tensor], n: int) -> torch.Tensor:
    """An RY layer on every wire, block by block. state: [..., rows, 2^n]; blocks from ry_blocks, shared
    ([2^k, 2^k]) or per row ([rows, 2^k, 2^k]).

    A shared block is applied to the fastest-varying wires as one plain matrix product, then those wires are moved
    to the front (one transposing copy), so every block is the last in turn and the wire order is restored at
    the end: large matrix products whose backward is two more, with no batch of small products (a broadcast
    batched product's backward materialises one weight gradient per batch entry)."""
    shape, rows = state.shape, state.shape[-2]
    if blocks[0].dim() == 2:
        for rot in reversed(blocks):
            k = rot.shape[-1]
            state = (state.reshape(-1, k) @ rot).reshape(-1, 2**n // k, k).mT
        return state.reshape(shape)
    for (start, k), rot in zip(_blocks(n), blocks):
        view = state.reshape(-1, rows, 2**start, 2**k, 2 ** (n - start - k))
        state = torch.matmul(rot.mT[:, None], view)  # [rows, 1, 2^k, 2^k] broadcasts over the leading wires
    return state.reshape(shape)


def _shared(plan: Plan, tables: Tables, theta_pad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Everything the gate path needs from theta, computed once per call: phase cos, sin [runs + 1, 2^n] and,
    per block, the shared RY layers' matrices [layers + 1, 2^k, 2^k]."""
    return (*_phases(tables, theta_pad), *ry_blocks(theta_pad[tables.ry], plan.n))


def _run_steps(state: torch.Tensor, plan: Plan, tables: Tables, h_pad, theta_pad, shared) -> torch.Tensor:
    """Apply the plan's steps to a batch of states [rows, 2^n] (real) -> [2, rows, 2^n] or real [rows, 2^n]."""
    cos, sin, *blocks = shared
    for kind, j in plan.steps:
        if kind == "phase":
            state = apply_phase(state, cos[j], sin[j])
        elif kind == "ry":
            state = apply_ry(state, [b[j] for b in blocks], plan.n)
        else:
            angles = h_pad[:, tables.rows_h[j]] + theta_pad[tables.rows_w[j]]
            state = apply_ry(state, ry_blocks(angles, plan.n), plan.n)
    return state


def _measure(state: torch.Tensor, tables: Tables) -> torch.Tensor:
    """<Z_i> from the final amplitudes: [rows, 2^n] real, [2, rows, 2^n] or [rows, 2 * 2^n] (re | im)."""
    if state.dim() == 3:
        state = torch.cat([state[0], state[1]], 1)
    elif state.shape[1] != tables.signs2.shape[0]:
        return state.square() @ tables.signs2[: state.shape[1]]
    return state.square() @ tables.signs2


def _encode(plan: Plan, tables: Tables, h_pad, theta_pad) -> torch.Tensor:
    return product_state(h_pad[:, tables.encode_h] + theta_pad[tables.encode_w])


def simulate_gates(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    plan, tables = compile_plan(spec), _tables(spec, h.device, h.dtype)
    h_pad, theta_pad = _padded(h, theta)
    shared = _shared(plan, tables, theta_pad)
    state = _run_steps(_encode(plan, tables, h_pad, theta_pad), plan, tables, h_pad, theta_pad, shared)
    return _measure(state, tables)


@dataclass(frozen=True)
class Flips:
    """The wire-flip rule's tables for n wires: d RY(a)|0> / da = (-sin a/2, cos a/2) / 2 is the wire's two
    amplitudes swapped, the first negated, halved; so the derivative of a product state psi in wire w's angle is
    sign * psi[flip] / 2, and that of an RY layer's matrix R (entry [y, x] = prod_i RY_i[x_i, y_i]) in its angle
    w is R with columns flipped the same way."""

    flip: torch.Tensor  # [n * 2^n]: basis state x with bit w flipped, for each w and x
    sign: torch.Tensor  # [n, 2^n, 1]: 2 bit_w(x) - 1
    pairs: torch.Tensor  # [n * 2^n]: x * 2^n + flip_w(x), the entries (x, flip_w(x)) of a flattened 2^n square


@lru_cache(maxsize=32)
@_normal_tensors
def _flips(n: int, device: torch.device, dtype: torch.dtype) -> Flips:
    bits = _bits(n, device)
    x = torch.arange(2**n, device=device)
    flip = x[None, :] ^ (1 << torch.arange(n - 1, -1, -1, device=device))[:, None]
    return Flips(flip.reshape(-1), (2 * bits.T - 1).to(dtype)[..., None], (x * 2**n + flip).reshape(-1))


@lru_cache(maxsize=64)
def _factor_rows(plan: Plan) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The dense chain's factors: (RY layer, following phase run) rows of the tables per factor; the tables' last
    rows are the identity layer and no phase, for a phase with no RY layer before it and an RY layer with none
    after it."""
    ry_rows: list[int] = []
    phase_rows: list[int] = []
    identity, no_phase = len(plan.ry), len(plan.phase_index)
    for kind, j in plan.steps:
        if kind == "ry":
            ry_rows.append(j)
            phase_rows.append(no_phase)
        elif phase_rows and phase_rows[-1] == no_phase and ry_rows[-1] != identity:
            phase_rows[-1] = j  # the phase right after an RY layer joins its factor
        else:
            ry_rows.append(identity)
            phase_rows.append(j)
    return tuple(ry_rows), tuple(phase_rows)


def _dense_circuit(chain: Chain, theta_pad: torch.Tensor) -> torch.Tensor:
    """The steps as one matrix [2^n, 2 * 2^n] = (re | im) of the output for a real input row: a chain of factors
    (RY layer) x (following phase), each the real form [[R C, R S], [-R S, R C]] of a complex 2^n matrix, all built
    at once (_DenseChain). A chain with leading dims (one per light cone) gives a matrix per cone."""
    dim = chain.phase_coef.shape[-1]
    if chain.ry.shape[-2] == 0:
        lead = chain.ry.shape[:-2]
        return torch.eye(dim, 2 * dim, dtype=theta_pad.dtype, device=theta_pad.device).expand(*lead, dim, 2 * dim)
    return _DenseChain.apply(theta_pad, chain.ry, chain.phase_index, chain.phase_coef)


def _chain_forward(theta_pad: torch.Tensor, chain: Chain) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The dense chain's matrix and what its backward needs (_chain_backward)."""
    dim = chain.phase_coef.shape[-1]
    rot = ry_matrix(theta_pad[chain.ry])  # [..., factors, 2^n, 2^n]
    phase = _phase_angles(theta_pad, chain.phase_index, chain.phase_coef)  # [..., factors, 1, 2^n]: per column
    cos, sin = torch.cos(phase), torch.sin(phase)
    rc, rs = rot * cos, rot * sin
    factors = torch.cat([torch.cat([rc, rs], -1), torch.cat([-rs, rc], -1)], -2)  # [..., factors, 2D, 2D]
    prefixes = [factors[..., 0, :dim, :]]  # the input is real: only the real half of the first factor's rows
    for k in range(1, factors.shape[-3]):  # left to right: [2^n, 2 * 2^n] products, the cheapest order
        prefixes.append(prefixes[-1] @ factors[..., k, :, :])
    return prefixes[-1], (rot, cos, sin, factors, *prefixes[:-1])


def _chain_matrix(theta_pad, ry, phase_index, phase_coef) -> torch.Tensor:
    return _chain_forward(theta_pad, Chain(ry, phase_index, phase_coef))[0]


def _chain_backward(grad: torch.Tensor, theta_pad: torch.Tensor, chain: Chain, saved) -> torch.Tensor:
    """theta_pad's gradient from the matrix's: the chain's product rule, then per factor the phase and the rotation
    parts of [[R C, R S], [-R S, R C]], and the RY angles' from the wire-flip rule (Flips: one small product
    g_R^T R per factor, then its (x, flip_w(x)) entries)."""
    rot, cos, sin, factors, *prefixes = saved
    dim = chain.phase_coef.shape[-1]
    g_factors = []
    for k in range(factors.shape[-3] - 1, 0, -1):  # grad: the gradient of the product of factors 0..k
        g_factors.append(prefixes[k - 1].mT @ grad)
        grad = grad @ factors[..., k, :, :].mT
    g_factors.append(torch.cat([grad, torch.zeros_like(grad)], -2))
    g = torch.stack(g_factors[::-1], -3)  # [..., factors, 2D, 2D]
    g_rc = g[..., :dim, :dim] + g[..., dim:, dim:]
    g_rs = g[..., :dim, dim:] - g[..., dim:, :dim]
    g_rot = g_rc * cos + g_rs * sin
    g_phase = (rot * (g_rs * cos - g_rc * sin)).sum(-2)  # [..., factors, 2^n]
    n = chain.ry.shape[-1]
    flips = _flips(n, rot.device, rot.dtype)  # sum_{y, x} g_rot[y, x] sign_w(x) rot[y, flip_w(x)] / 2:
    pairs = (g_rot.mT @ rot).flatten(-2).index_select(-1, flips.pairs).unflatten(-1, (n, dim))
    g_angles = pairs.mul_(flips.sign.squeeze(-1)).sum(-1).mul_(0.5)  # [..., factors, n]
    g_phase_angles = (g_phase.unsqueeze(-2) @ chain.phase_coef.mT).squeeze(-2)  # [..., factors, gates]
    g_theta = torch.zeros_like(theta_pad)  # under autocast the products above may be bfloat16: theta's dtype
    g_theta.index_put_((chain.ry,), g_angles.to(g_theta.dtype), accumulate=True)
    g_theta.index_put_((chain.phase_index,), g_phase_angles.to(g_theta.dtype), accumulate=True)
    return g_theta


def _autocast_state(tensor: torch.Tensor) -> tuple[str, bool, torch.dtype]:
    """The autocast state a forward ran under, on the device of its inputs (torch.amp.custom_fwd, for any device)."""
    device = tensor.device.type
    return device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)


def _written_out(ops):
    """Decorate a written-out backward whose ctx.saved_tensors begin with the forward's inputs, and whose forward
    recorded ctx.autocast (_autocast_state). The backward runs under that autocast state: under autocast the
    forward's products are bfloat16 and its tables float32, and PyTorch's advice is to call backward() outside
    autocast, where mixing them would fail (torch.amp.custom_bwd, for any device). Under backward(create_graph=True)
    the written-out formulas, which are not differentiable themselves (second derivatives through them would
    silently miss terms), give way to autograd on `ops`, the forward's math in tensor ops: slower, exact to any
    order."""

    def decorate(backward):
        @wraps(backward)
        def wrapped(ctx, grad):
            device, enabled, dtype = ctx.autocast
            with torch.autocast(device, dtype=dtype, enabled=enabled):
                if not torch.is_grad_enabled():
                    return backward(ctx, grad)
                needs = ctx.needs_input_grad
                inputs = ctx.saved_tensors[: len(needs)]
                wanted = [x for x, need in zip(inputs, needs) if need]
                grads = iter(torch.autograd.grad(ops(*inputs), wanted, grad, create_graph=True, allow_unused=True))
                return tuple(next(grads) if need else None for need in needs)

        return wrapped

    return decorate


class _DenseChain(torch.autograd.Function):
    """The dense circuit matrix from theta_pad, backward written out (at small n the call's cost is its number of
    ops, and autograd recorded several dozen for this chain)."""

    @staticmethod
    def forward(ctx, theta_pad, ry, phase_index, phase_coef):
        chain = Chain(ry, phase_index, phase_coef)
        matrix, saved = _chain_forward(theta_pad, chain)
        ctx.autocast = _autocast_state(theta_pad)
        ctx.save_for_backward(theta_pad, ry, phase_index, phase_coef, *saved)
        return matrix

    @staticmethod
    @_written_out(_chain_matrix)
    def backward(ctx, grad):
        theta_pad, ry, phase_index, phase_coef, *saved = ctx.saved_tensors
        return _chain_backward(grad, theta_pad, Chain(ry, phase_index, phase_coef), saved), None, None, None


def _expvals(matrix: torch.Tensor, states_t: torch.Tensor, signs2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """<Z_i> [rows, n] of real states^T [2^n, rows] sent through a real matrix [2^n, 2 * 2^n] (re | im of the
    output), and the output [2 * 2^n, rows] (the backward's), in the layout with rows as the fastest axis: at small
    n the cost is the number of passes over [2^n, rows] tensors and how well their products vectorise (rows-fast
    products with a long inner loop)."""
    out = matrix.T @ states_t
    return (signs2.T @ out.square()).T, out


def _half_output_grad(grad: torch.Tensor, out: torch.Tensor, signs2: torch.Tensor) -> torch.Tensor:
    """Half the gradient of the output [2 * 2^n, rows] from that of <Z_i> [rows, n] (the 2 of d out^2 is left to
    the callers: the wire-flip rule's 1/2 cancels it)."""
    return (signs2 @ grad.T).mul_(out)


def _matrix_grad(g_half: torch.Tensor, states_t: torch.Tensor) -> torch.Tensor:
    return (g_half @ states_t.T).T.mul_(2)


def _through_matrix(states_t: torch.Tensor, matrix: torch.Tensor, signs2: torch.Tensor) -> torch.Tensor:
    return _expvals(matrix, states_t, signs2)[0]


class _ThroughMatrix(torch.autograd.Function):
    """<Z_i> of states^T [2^n, rows] sent through the circuit's matrix (_expvals), backward written out (autograd
    records about twice the ops): the fused mode above DENSE_QUBITS wires, where the matrix is built by the gate
    path and the states by product_state_t."""

    @staticmethod
    def forward(ctx, states_t, matrix, signs2):
        expvals, out = _expvals(matrix, states_t, signs2)
        ctx.autocast = _autocast_state(states_t)
        ctx.save_for_backward(states_t, matrix, signs2, out)
        return expvals

    @staticmethod
    @_written_out(_through_matrix)
    def backward(ctx, grad):
        states_t, matrix, signs2, out = ctx.saved_tensors
        g_half = _half_output_grad(grad, out, signs2)
        g_states = (matrix @ g_half).mul_(2) if ctx.needs_input_grad[0] else None
        g_matrix = _matrix_grad(g_half, states_t) if ctx.needs_input_grad[1] else None
        return g_states, g_matrix, None


def _small_circuit(h, theta, encode_w, signs2, ry, phase_index, phase_coef) -> tuple[torch.Tensor, tuple]:
    """_SmallCircuit's forward in tensor ops: <Z_i> [rows, n], and what its written-out backward reuses."""
    theta_pad = _theta_padded(theta)
    matrix, saved = _chain_forward(theta_pad, Chain(ry, phase_index, phase_coef))
    states_t = product_state_t(h + theta_pad[encode_w])
    expvals, out = _expvals(matrix, states_t, signs2)
    return expvals, (theta_pad, states_t, matrix, out, saved)


class _SmallCircuit(torch.autograd.Function):
    """The whole fused mode up to DENSE_QUBITS wires as one function, (h, theta) -> <Z_i>: the dense chain, the
    encoding angles h + theta, their product state and _expvals, with one written-out backward (at n = 4 the call
    is a few dozen small ops, and each autograd node and Python frame is a measurable share of it). The angles'
    gradient comes from the wire-flip rule (Flips: [n, 2^n, rows] elementwise, cheap at these widths) instead of
    the product state's tree of outer products. Wire i reads column i of h (the plan's encoding, checked by the
    caller)."""

    @staticmethod
    def forward(ctx, *inputs):
        expvals, (theta_pad, states_t, matrix, out, saved) = _small_circuit(*inputs)
        ctx.theta_shape, ctx.autocast = inputs[1].shape, _autocast_state(inputs[0])
        ctx.save_for_backward(*inputs, theta_pad, states_t, matrix, out, *saved)
        return expvals

    @staticmethod
    @_written_out(lambda *inputs: _small_circuit(*inputs)[0])
    def backward(ctx, grad):
        h, theta, encode_w, signs2, ry, phase_index, phase_coef, theta_pad, states_t, matrix, out, *saved = (
            ctx.saved_tensors
        )
        g_half = _half_output_grad(grad, out, signs2)
        n, rows = signs2.shape[1], states_t.shape[1]
        flips = _flips(n, states_t.device, states_t.dtype)  # d psi / d angle_w = sign * psi[flip] / 2
        flipped = states_t.index_select(0, flips.flip).view(n, -1, rows).mul_(flips.sign)
        g_angles = flipped.mul_(matrix @ g_half).sum(1).T  # [rows, n]: the rule's 1/2 cancels out's 2
        chain = Chain(ry, phase_index, phase_coef)
        g_theta = _chain_backward(_matrix_grad(g_half, states_t), theta_pad, chain, saved)
        g_theta.index_add_(0, encode_w, g_angles.sum(0).to(g_theta.dtype))
        return g_angles, g_theta[:-1].view(ctx.theta_shape), None, None, None, None, None


def _encode_angles(tables: Tables, h: torch.Tensor, theta_pad: torch.Tensor) -> torch.Tensor:
    """The encoding layer's angle per row and wire (wire i reads column i of h: _encoded_in_order)."""
    return h + theta_pad[tables.encode_w]


def _encoded_in_order(plan: Plan) -> None:
    """The fused and cone modes read wire i's input from column i of h, as every VQCSpec circuit encodes it."""
    if plan.per_row:
        raise ValueError("The fused and cone modes need the data encoded once (reupload=false); use mode 'gates'.")
    if plan.encode[0] != tuple(range(plan.n)):
        raise ValueError(f"The fused and cone modes need wire i to encode column i of h; got {plan.encode[0]}.")


def simulate_fused(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    plan, tables = compile_plan(spec), _tables(spec, h.device, h.dtype)
    _encoded_in_order(plan)
    if spec.n_qubits <= DENSE_QUBITS:
        chain = tables.chain
        return _SmallCircuit.apply(
            h, theta, tables.encode_w, tables.signs2, chain.ry, chain.phase_index, chain.phase_coef
        )
    theta_pad = _theta_padded(theta)
    eye = torch.eye(2**spec.n_qubits, dtype=h.dtype, device=h.device)
    matrix = _run_steps(eye, plan, tables, None, theta_pad, _shared(plan, tables, theta_pad))  # row j: circuit |j>
    if matrix.dim() == 3:
        matrix = torch.cat([matrix[0], matrix[1]], 1)
    states_t = product_state_t(_encode_angles(tables, h, theta_pad))
    return _ThroughMatrix.apply(states_t, matrix, tables.signs2)


@dataclass(frozen=True)
class Cones:
    """Every measured wire's backward light cone: one plan per wire, all of one structure (the ring is the same
    seen from every wire), on the cone's wires renumbered along the ring, and the measured wire's place in it."""

    plans: tuple[Plan, ...]
    center: int


def _light_cone(gates: tuple[Gate, ...], wire: int) -> set[int]:
    """The wires whose gates can change <Z_wire>: going back from the measurement, a two-wire gate that touches
    them adds its other wire (a gate that does not touch them commutes with the observable and cancels). A run of
    CRZ gates is diagonal, its gates commute, so the run is one step: it widens the set by the gates that touch
    it before the run, not by a chain around the ring."""
    support, run = {wire}, []
    for g in reversed((*gates, None)):
        if g is not None and g.name == "crz":
            run.append(g.wires)
            continue
        touched = [w for wires in run if support.intersection(wires) for w in wires]
        support.update(touched)
        run = []
    return support


def _structure(plan: Plan) -> tuple:
    """What two plans must share to be run as one batch: everything but which angles they read."""
    masks = [tuple(i >= 0 for i in index) for index in (*plan.encode, *plan.ry, *(i for r in plan.rows for i in r))]
    return plan.n, plan.steps, plan.phase_pairs, tuple(masks), tuple(len(i) for i in plan.phase_index)


@lru_cache(maxsize=64)
def light_cones(spec: VQCSpec) -> Cones | None:
    """<Z_j> depends only on the gates inside wire j's backward light cone (exactly: the others cancel in
    U^dag Z_j U, and the input is a product state). Each CRZ run widens the cone by one wire on each side, so
    shallow circuits on many wires see a small cone: n = 10, L = 2 has cones of 7 wires (3 runs left after the
    last is dropped). None when the cone is the whole register, or the data is re-uploaded (the cone mode is
    fused: data in the first layer only)."""
    if spec.reupload:
        return None
    n, gates = spec.n_qubits, _trimmed_gates(spec)
    plans = []
    for wire in range(n):
        support = _light_cone(gates, wire)
        radius = (len(support) - 1) // 2
        arc = [(wire - radius + p) % n for p in range(len(support))]
        if len(support) == n or set(arc) != support:
            return None
        local = {w: p for p, w in enumerate(arc)}
        inside = [g for g in gates if all(w in local for w in g.wires)]
        renumbered = tuple(Gate(g.name, tuple(local[w] for w in g.wires), g.source, g.index) for g in inside)
        plans.append(_compile(len(arc), renumbered, n))
    if any(_structure(p) != _structure(plans[0]) for p in plans):
        return None
    encode = compile_plan(spec).encode  # the cone mode reads each cone's inputs as a slice of the ring of wires
    if any(
        p.encode != tuple(tuple(e[(j - radius + i) % n] for i in range(p.n)) for e in encode)
        for j, p in enumerate(plans)
    ):
        return None
    return Cones(tuple(plans), radius)


@lru_cache(maxsize=64)
@_normal_tensors
def _cone_tables(spec: VQCSpec, device: torch.device, dtype: torch.dtype) -> tuple[Chain, torch.Tensor]:
    """The cones' dense chains stacked (index tensors get a leading wire dimension; the coefficients are shared)
    and the signs of the measured wire's Z over a cone's (re | im) amplitudes [2 * 2^c]."""
    cones = light_cones(spec)
    tables = [_plan_tables(plan, spec, device, dtype) for plan in cones.plans]
    stacked = (torch.stack([t.chain.ry for t in tables]), torch.stack([t.chain.phase_index for t in tables]))
    return Chain(*stacked, tables[0].chain.phase_coef), tables[0].signs2[:, cones.center]


def simulate_cone(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    """<Z_j> for every wire j from its light cone in the Heisenberg picture: the cone's circuit as a matrix
    A_j [2^c, 2 * 2^c] (dense chain), the observable M_j = A_j diag(z, z) A_j^T (real, symmetric: the input
    states are real), and <Z_j> = psi^T M_j psi for the cone's product state psi, written as C_j . features: linear
    in the 3^c products of (1, cos, sin) of the cone's angles (quadratic_to_trig), split into two parts of the cone
    so that one small product per wire does it: cost ~ rows * n * 3^c against the fused mode's rows * 2 * 4^n
    (n = 10, L = 2: 2,187 against 2 million per row)."""
    cones = light_cones(spec)
    if cones is None:
        raise ValueError(f"{spec}: a light cone is the whole register (or the data is re-uploaded): no cone mode.")
    chain, signs = _cone_tables(spec, h.device, h.dtype)
    theta_pad = _theta_padded(theta)
    circuit = _dense_circuit(chain, theta_pad)  # [n, 2^c, 2 * 2^c]
    observable = (circuit * signs) @ circuit.mT  # [n, 2^c, 2^c]
    n, width = spec.n_qubits, cones.plans[0].n
    short = width // 2  # <Z_j> = f_short^T C_j f_long: trig features of the cone's two parts, the longer one
    coefficients = quadratic_to_trig(observable).reshape(n, 3**short, 3 ** (width - short))  # multiplied by C_j
    _encoded_in_order(compile_plan(spec))
    angles = _encode_angles(_tables(spec, h.device, h.dtype), h, theta_pad)  # [rows, n]
    per_wire = trig_per_wire(angles.T)  # [n, 3, rows]
    radius = cones.center
    ring = torch.cat([per_wire[n - radius :], per_wire, per_wire[:radius]])  # [n + 2 radius, 3, rows]
    parts = [ring[p : p + n] for p in range(width)]  # position p of every cone, a slice (no gather, no copy)
    near, far = _kron_rows(parts[:short]), _kron_rows(parts[short:])
    return (near * (coefficients @ far)).sum(1).T  # [n, 3^short, rows] products: rows stay the fastest axis


# s s^T of one wire's state s = (cos h/2, sin h/2), entry (a, b) at 2a + b, in the features (1, cos h, sin h)
_PAIR_TO_TRIG = ((0.5, 0.5, 0.0), (0.0, 0.0, 0.5), (0.0, 0.0, 0.5), (0.5, -0.5, 0.0))


def quadratic_to_trig(observable: torch.Tensor) -> torch.Tensor:
    """C [..., 3^c] with s^T M s = sum_k C[k] prod_w f_{k_w}(h_w), f = (1, cos, sin), for every product state
    s = (x)_w RY(h_w)|0> and M [..., 2^c, 2^c]: s_a s_b is a product over wires of (a_w, b_w) entries of s_w s_w^T,
    each a combination of (1, cos h_w, sin h_w), so the quadratic form is linear in 3^c features (against 4^c
    entries of M, and a sum over 2^c x 2^c terms per row). Wire by wire, as c small contractions."""
    lead, c = observable.shape[:-2], observable.shape[-1].bit_length() - 1
    pairs = observable.reshape(-1, *(2,) * (2 * c))  # axes a_0 .. a_{c-1}, b_0 .. b_{c-1}
    order = [0] + [axis for w in range(c) for axis in (1 + w, 1 + c + w)]
    x = pairs.permute(order).reshape(-1, *(4,) * c)
    to_trig = torch.tensor(_PAIR_TO_TRIG, dtype=observable.dtype, device=observable.device)
    for _ in range(c):  # contract the first remaining wire's pair axis; its 3 features go last: order kept
        x = torch.tensordot(x, to_trig, dims=([1], [0]))
    return x.reshape(*lead, 3**c)


def choose_mode(spec: VQCSpec, rows: int) -> str:
    """The cheaper exact mode by a cost estimate in which a large dense matrix product (the fused mode's) runs
    about 8x more efficiently per flop than the gate path's block products, phases and copies (measured on the
    2-core CPU, 2026-12-05: at n = 10, L = 2, 8,192 rows the gate path took ~1.8x the fused mode's time, as this
    estimate predicts); fused needs a single encoding, and few rows favour the gate path. The cone mode's terms are
    fitted to its times at n = 8 and 10, L = 2, 8,192 rows (2026-12-06: 46 and 56 ms; fused 53-63 and ~700 ms)."""
    if spec.reupload:
        return "gates"
    n, dim = spec.n_qubits, 2**spec.n_qubits
    per_row_gates = dim * 2 * spec.n_layers * (2 * 2**BLOCK * len(_blocks(n)) + 8)
    costs = {"gates": rows * per_row_gates, "fused": dim * per_row_gates + rows * dim * dim * 2 / 8}
    cones = light_cones(spec)
    if cones is not None:  # per wire: its cone's dense circuit (factors of 2^(c+1) squared) and 3^c per row
        width, factors = cones.plans[0].n, len(cones.plans[0].ry) + 1
        costs["cone"] = n * factors * 2 ** (3 * width + 3) / 8 + rows * n * 3**width / 2
    return min(costs, key=costs.get)


def simulate(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec, mode: str = "auto") -> torch.Tensor:
    """<Z_i> of the circuit for each row of h [rows, n], exact, differentiable in h and theta."""
    if mode not in MODES:
        raise ValueError(f"Unknown simulation mode {mode!r}; choose one of {MODES}.")
    mode = choose_mode(spec, h.shape[0]) if mode == "auto" else mode
    run = {"fused": simulate_fused, "cone": simulate_cone, "gates": simulate_gates}[mode]
    return run(h, theta, spec)
