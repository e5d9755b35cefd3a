"""The circuit-writing task's data: graph problems -> QUBO -> Ising -> optimised QAOA / VQE circuits in OpenQASM 3.0,
checked by a strict verifier. See docs/qasm_data.md."""
