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
(cos, sin) per basis state (all runs from one product of angles and a sign table). Two exact evaluation modes:
  - "gates": apply the layers to the batch of encoded states (cost ~ rows * 2^n * layers * 2^BLOCK); a shared
    block is one plain matrix product on the fastest-varying wires followed by a transposing copy that rotates
    the next block into that place;
  - "fused": when the data enters only in the first layer, build the rest of the circuit once per call as one
    real matrix [2^n, 2 * 2^n] (real | imaginary part of the output for a real input) and multiply the batch of
    product states by it in one matrix product (cost ~ rows * 2 * 4^n, which dominates from n ~ 8). Up to
    DENSE_QUBITS wires that matrix is a chain of dense factors, one per RY layer and its following phase, all
    built at once (a few dozen tensor ops whatever the depth: at small n the cost is per-op overhead); above,
    the layers are applied to the 2^n basis states as in the gate path.
choose_mode picks between them by a cost estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from quantum_ft.quantum.circuit import VQCSpec, circuit_gates

MODES = ("auto", "gates", "fused")
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
    n = spec.n_qubits
    layers: list[list] = []  # ["ry", h column per wire, theta index per wire] | ["crz", pairs, theta indices]
    for g in circuit_gates(spec, with_encoding=True):
        last = layers[-1] if layers else None
        if g.name == "ry":
            slot, value = (
                (1, g.index[0]) if g.source == "input" else (2, (g.index[0] * 4 + g.index[1]) * n + g.index[2])
            )
            if last is None or last[0] != "ry" or last[slot][g.wires[0]] != -1:
                last = ["ry", [-1] * n, [-1] * n]
                layers.append(last)
            last[slot][g.wires[0]] = value
        else:
            if last is None or last[0] != "crz":
                last = ["crz", [], []]
                layers.append(last)
            last[1].append(tuple(g.wires))
            last[2].append(_flat(g.index, n))
    while layers and layers[-1][0] == "crz":  # diagonal right before a Z measurement: no effect on <Z>
        layers.pop()
    encode = ((-1,) * n, (-1,) * n)
    if layers and layers[0][0] == "ry":
        encode = (tuple(layers[0][1]), tuple(layers[0][2]))
        layers = layers[1:]
    steps, ry, rows, phase_index, phase_pairs = [], [], [], [], []
    for kind, a, b in layers:
        if kind == "crz":
            steps.append(("phase", len(phase_index)))
            phase_index.append(tuple(b))
            phase_pairs.append(tuple(a))
        elif any(c >= 0 for c in a):
            steps.append(("row", len(rows)))
            rows.append((tuple(a), tuple(b)))
        else:
            steps.append(("ry", len(ry)))
            ry.append(tuple(b))
    return Plan(n, encode, tuple(steps), tuple(ry), tuple(rows), tuple(phase_index), tuple(phase_pairs))


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
    half = angles.T / 2
    parts = list(torch.stack([torch.cos(half), torch.sin(half)], 1).unbind(0))  # [2, rows] per wire
    while len(parts) > 1:
        pairs = zip(parts[0::2], parts[1::2])
        merged = [(a[:, None, :] * b[None, :, :]).flatten(0, 1) for a, b in pairs]
        parts = merged + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0].T


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


@lru_cache(maxsize=64)
@_normal_tensors
def _tables(spec: VQCSpec, device: torch.device, dtype: torch.dtype) -> Tables:
    plan, n = compile_plan(spec), spec.n_qubits
    zero_w = n * 4 * spec.n_layers  # index of the zero appended to theta.flatten()

    def idx(values, zero: int) -> list[int]:
        return [v if v >= 0 else zero for v in values]

    def tensor(rows: list, width: int) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=device).reshape(-1, width)

    gates = max((len(p) for p in plan.phase_index), default=1)
    bits = _bits(n, device).to(dtype)
    coef = torch.zeros(len(plan.phase_index) + 1, gates, 2**n, dtype=dtype, device=device)
    phase_index = []
    for j, (index, pairs) in enumerate(zip(plan.phase_index, plan.phase_pairs)):
        # CRZ(t) = diag(1, 1, e^{-it/2}, e^{it/2}): a phase of -+t/2 when the control is 1 (target 0 / 1)
        for g, (control, target) in enumerate(pairs):
            coef[j, g] = bits[:, control] * (2 * bits[:, target] - 1) / 2
        phase_index.append(list(index) + [zero_w] * (gates - len(index)))
    phase_index.append([zero_w] * gates)
    signs = 1 - 2 * bits
    return Tables(
        encode_h=tensor(idx(plan.encode[0], n), n)[0],
        encode_w=tensor(idx(plan.encode[1], zero_w), n)[0],
        ry=tensor([idx(r, zero_w) for r in plan.ry] + [[zero_w] * n], n),
        rows_h=tensor([idx(h, n) for h, _ in plan.rows], n),
        rows_w=tensor([idx(w, zero_w) for _, w in plan.rows], n),
        phase_index=tensor(phase_index, gates),
        phase_coef=coef,
        signs2=torch.cat([signs, signs]),
    )


def _padded(h: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h with a zero column and theta flattened with a zero: index -1 of the plan reads angle 0."""
    return torch.cat([h, h.new_zeros(h.shape[0], 1)], 1), torch.cat([theta.reshape(-1), theta.new_zeros(1)])


def _phases(tables: Tables, theta_pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of every CRZ run's phase per basis state, [runs + 1, 2^n] each, in one product."""
    phase = (theta_pad[tables.phase_index][:, None, :] @ tables.phase_coef)[:, 0]
    return torch.cos(phase), torch.sin(phase)


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


def _dense_circuit(plan: Plan, tables: Tables, theta_pad: torch.Tensor) -> torch.Tensor:
    """The steps as one matrix [2^n, 2 * 2^n] = (re | im) of the output for a real input row: a chain of factors
    (RY layer) x (following phase), each the real form [[R C, R S], [-R S, R C]] of a complex 2^n matrix, all built
    at once."""
    ry_rows, phase_rows, identity, no_phase = [], [], len(plan.ry), len(plan.phase_index)
    for kind, j in plan.steps:
        if kind == "ry":
            ry_rows.append(j)
            phase_rows.append(no_phase)
        elif phase_rows and phase_rows[-1] == no_phase and ry_rows[-1] != identity:
            phase_rows[-1] = j  # the phase right after an RY layer joins its factor
        else:
            ry_rows.append(identity)
            phase_rows.append(j)
    dim = 2**plan.n
    if not ry_rows:
        return torch.eye(dim, 2 * dim, dtype=theta_pad.dtype, device=theta_pad.device)
    rot = ry_matrix(theta_pad[tables.ry[ry_rows]])  # [factors, 2^n, 2^n]
    cos, sin = _phases(tables, theta_pad)
    rc, rs = rot * cos[phase_rows][:, None, :], rot * sin[phase_rows][:, None, :]
    factors = torch.cat([torch.cat([rc, rs], 2), torch.cat([-rs, rc], 2)], 1).unbind(0)
    first = factors[0][:dim]  # the input is real: only the real half of the first factor's rows
    return torch.linalg.multi_dot([first, *factors[1:]]) if len(factors) > 1 else first


def simulate_fused(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    plan, tables = compile_plan(spec), _tables(spec, h.device, h.dtype)
    if plan.per_row:
        raise ValueError("The fused mode needs the data encoded once (reupload=false); use mode 'gates'.")
    h_pad, theta_pad = _padded(h, theta)
    if spec.n_qubits <= DENSE_QUBITS:
        matrix = _dense_circuit(plan, tables, theta_pad)
    else:
        eye = torch.eye(2**spec.n_qubits, dtype=h.dtype, device=h.device)
        shared = _shared(plan, tables, theta_pad)
        matrix = _run_steps(eye, plan, tables, h_pad, theta_pad, shared)  # row j = the circuit applied to |j>
        if matrix.dim() == 3:
            matrix = torch.cat([matrix[0], matrix[1]], 1)
    return _measure(_encode(plan, tables, h_pad, theta_pad) @ matrix, tables)


def choose_mode(spec: VQCSpec, rows: int) -> str:
    """The cheaper exact mode by a cost estimate in which a large dense matrix product (the fused mode's) runs
    about 8x more efficiently per flop than the gate path's block products, phases and copies (measured on the
    2-core CPU, 2026-12-05: at n = 10, L = 2, 8,192 rows the gate path took ~1.8x the fused mode's time, as this
    estimate predicts); fused needs a single encoding, and few rows favour the gate path."""
    if spec.reupload:
        return "gates"
    dim = 2**spec.n_qubits
    per_row_gates = dim * 2 * spec.n_layers * (2 * 2**BLOCK * len(_blocks(spec.n_qubits)) + 8)
    gates = rows * per_row_gates
    fused = dim * per_row_gates + rows * dim * dim * 2 / 8
    return "fused" if fused < gates else "gates"


def simulate(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec, mode: str = "auto") -> torch.Tensor:
    """<Z_i> of the circuit for each row of h [rows, n], exact, differentiable in h and theta."""
    if mode not in MODES:
        raise ValueError(f"Unknown simulation mode {mode!r}; choose one of {MODES}.")
    mode = choose_mode(spec, h.shape[0]) if mode == "auto" else mode
    return simulate_fused(h, theta, spec) if mode == "fused" else simulate_gates(h, theta, spec)
