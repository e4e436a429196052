"""Randomised chains of per-channel BatchNormalization / Mul / Add (either operand order, every
broadcast form of the constant) after each absorbing producer: the whole ``fuse`` catalogue must
fold them and keep the outputs equal."""

from __future__ import annotations

import random

import numpy as np
import pytest
from graph_testing import apply, assert_equivalent, build, op_types, snapshot

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
CASES = 24


def _producer(r: random.Random, rng: np.random.Generator):
    """(graph input, output type, first lines, initializers, rank, channel axis, channels)."""
    kind = r.choice(["conv", "conv_transpose", "gemm", "matmul", "batchnorm"])
    if kind == "conv":
        group = r.choice([1, 2, 4])
        bias = ", b" if r.random() < 0.5 else ""
        line = f"t0 = Conv <kernel_shape = [3, 3], group = {group}> (x, w{bias})"
        inits = {"w": rng.normal(size=(4, 4 // group, 3, 3)), "b": rng.normal(size=4)}
        return "float[1,4,6,6] x", "float[1,4,4,4] y", [line], inits, 4, 1, 4
    if kind == "conv_transpose":
        group = r.choice([1, 2])
        line = (
            f"t0 = ConvTranspose <kernel_shape = [2, 2], strides = [2, 2], group = {group}> (x, w)"
        )
        inits = {"w": rng.normal(size=(4, 4 // group, 2, 2))}
        return "float[1,4,3,3] x", "float[1,4,6,6] y", [line], inits, 4, 1, 4
    if kind == "gemm":
        trans_b = r.choice([0, 1])
        bias = ", c" if r.random() < 0.5 else ""
        line = f"t0 = Gemm <transB = {trans_b}, alpha = 0.7, beta = 1.3> (x, w{bias})"
        c_shape = r.choice([(5,), (3, 5), (1, 5), (3, 1)])
        inits = {"w": rng.normal(size=(5, 6) if trans_b else (6, 5)), "c": rng.normal(size=c_shape)}
        return "float[3,6] x", "float[3,5] y", [line], inits, 2, 1, 5
    if kind == "matmul":
        return (
            "float[3,6] x",
            "float[3,5] y",
            ["t0 = MatMul (x, w)"],
            {"w": rng.normal(size=(6, 5))},
            2,
            1,
            5,
        )
    lines = ["r = Relu (x)", "t0 = BatchNormalization (r, g0, b0, m0, v0)"]
    inits = {
        "g0": rng.normal(size=4),
        "b0": rng.normal(size=4),
        "m0": rng.normal(size=4),
        "v0": rng.uniform(0.5, 2.0, 4),
    }
    return "float[1,4,3,3] x", "float[1,4,3,3] y", lines, inits, 4, 1, 4


def _step(i: int, r: random.Random, rng: np.random.Generator, rank: int, axis: int, channels: int):
    op = r.choice(["Mul", "Add", "BatchNormalization"])
    if op == "BatchNormalization":
        inits = {
            f"g{i}": rng.normal(size=channels),
            f"b{i}": rng.normal(size=channels),
            f"m{i}": rng.normal(size=channels),
            f"v{i}": rng.uniform(0.5, 2.0, channels),
        }
        return f"t{i} = BatchNormalization (t{i - 1}, g{i}, b{i}, m{i}, v{i})", inits
    full = [1] * rank
    full[axis] = channels
    shape = tuple(full[r.randint(0, axis) :]) if r.random() < 0.8 else ()
    operands = [f"t{i - 1}", f"k{i}"]
    r.shuffle(operands)
    return f"t{i} = {op} ({operands[0]}, {operands[1]})", {f"k{i}": rng.normal(size=shape)}


@pytest.mark.parametrize("seed", range(CASES))
def test_random_affine_chain_folds_into_its_producer(seed):
    r, rng = random.Random(seed), np.random.default_rng(seed)
    graph_input, graph_output, lines, inits, rank, axis, channels = _producer(r, rng)
    length = r.randint(1, 4)
    for i in range(1, length + 1):
        line, more = _step(i, r, rng, rank, axis, channels)
        lines.append(line)
        inits.update(more)
    lines.append(f"y = Relu (t{length})")
    body = "\n".join(lines)
    model = build(
        f"{HEADER} g ({graph_input}) => ({graph_output}) {{ {body} }}",
        **{name: np.asarray(a, np.float32) for name, a in inits.items()},
    )
    reference = snapshot(model)
    apply(model)
    assert len(op_types(model)) == (3 if "BatchNormalization (r" in body else 2)
    assert_equivalent(reference, model, rtol=2e-6)
