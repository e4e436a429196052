"""The factorizations and rank selection in numpy: Tucker-2 against tensorly's
``partial_tucker``, truncation optimality, energy, VBMF and the MAC target, rank rounding."""

from __future__ import annotations

import numpy as np
import pytest
import tensorly
from tensorly.decomposition import partial_tucker

from graphopt.passes.lowrank import factorize
from graphopt.passes.lowrank.rank import (
    energy_rank,
    group_multiple,
    kept_energy,
    largest_within,
    round_up,
    vbmf_rank,
)


def _low_rank_plus_noise(shape, rank, noise, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1]))
    return signal + noise * rng.normal(size=shape)


def _structured_weight(seed=0):
    """A conv weight [32, 24, 3, 3] with decaying mode spectra (so that ranks matter)."""
    rng = np.random.default_rng(seed)
    core = rng.normal(size=(32, 24, 3, 3)) * np.exp(-np.arange(32) / 6)[:, None, None, None]
    core *= np.exp(-np.arange(24) / 5)[None, :, None, None]
    u = np.linalg.qr(rng.normal(size=(32, 32)))[0]
    v = np.linalg.qr(rng.normal(size=(24, 24)))[0]
    return np.einsum("or,rskl,cs->ockl", u, core, v) + 0.01 * rng.normal(size=(32, 24, 3, 3))


def _tucker_error(weight, core, u_out, u_in):
    approximation = np.einsum("or,rskl,cs->ockl", u_out, core, u_in)
    return np.linalg.norm(weight - approximation) / np.linalg.norm(weight)


@pytest.mark.parametrize("ranks", [(8, 8), (16, 12), (4, 20)])
def test_tucker2_error_within_one_percent_of_tensorly(ranks):
    weight = _structured_weight()
    tensorly.set_backend("numpy")
    (core, (t_out, t_in)), _ = partial_tucker(weight, rank=list(ranks), modes=[0, 1],
                                              n_iter_max=100, tol=1e-10)
    reference = _tucker_error(weight, np.asarray(core), np.asarray(t_out), np.asarray(t_in))
    hooi = _tucker_error(weight, *factorize.tucker2(weight, ranks, hooi_iterations=20))
    hosvd = _tucker_error(weight, *factorize.tucker2(weight, ranks))
    assert hooi <= reference * 1.01
    assert hosvd <= reference * 1.05  # HOSVD alone is quasi-optimal; HOOI only refines it
    assert hooi <= hosvd + 1e-12
    assert reference > 1e-3  # the ranks truncate something


def test_tucker2_factors_compose_to_the_core_decomposition():
    weight = _structured_weight(1)
    first, core, last = factorize.tucker2_factors(weight, (10, 7), hooi_iterations=2)
    assert first.shape == (7, 24, 1, 1) and core.shape == (10, 7, 3, 3)
    assert last.shape == (32, 10, 1, 1)
    # The factors are orthonormal projections.
    np.testing.assert_allclose(first[:, :, 0, 0] @ first[:, :, 0, 0].T, np.eye(7), atol=1e-10)
    np.testing.assert_allclose(last[:, :, 0, 0].T @ last[:, :, 0, 0], np.eye(10), atol=1e-10)


def test_gram_svd_matches_numpy_and_truncates_optimally():
    matrix = _low_rank_plus_noise((40, 90), 12, 0.1, seed=2)
    for m in (matrix, matrix.T):
        u, s, vt = factorize.svd(m)
        np.testing.assert_allclose(s, np.linalg.svd(m, compute_uv=False), rtol=1e-8)
        np.testing.assert_allclose((u * s) @ vt, m, atol=1e-9)
        a, b = factorize.matrix_factors(m, 12)
        best = np.sqrt(np.sum(s[12:] ** 2))
        assert np.linalg.norm(m - a @ b) == pytest.approx(best, rel=1e-9)
    rank_deficient = np.outer(np.arange(1.0, 6.0), np.arange(1.0, 9.0))
    a, b = factorize.matrix_factors(rank_deficient, 5)
    np.testing.assert_allclose(a @ b, rank_deficient, atol=1e-9)


def test_spatial_and_channel_factors_at_full_rank_reproduce_the_weight():
    weight = np.random.default_rng(3).normal(size=(6, 4, 3, 5))
    vertical, horizontal = factorize.spatial_factors(weight, 12)
    # W[o, c, i, j] = sum_r V[r, c, i] H[o, r, j]
    rebuilt = np.einsum("rci,orj->ocij", vertical[..., 0], horizontal[:, :, 0, :])
    np.testing.assert_allclose(rebuilt, weight, atol=1e-10)
    first, second = factorize.channel_factors(weight, 6)
    rebuilt = np.einsum("rcij,or->ocij", first, second[:, :, 0, 0])
    np.testing.assert_allclose(rebuilt, weight, atol=1e-10)


def test_energy_rank_is_the_smallest_rank_keeping_the_energy():
    values = np.array([4.0, 2.0, 1.0, 1.0])  # energies 16, 4, 1, 1 of 22
    assert energy_rank(values, 16 / 22) == 1
    assert energy_rank(values, 16.5 / 22) == 2
    assert energy_rank(values, 20 / 22) == 2
    assert energy_rank(values, 1.0) == 4
    assert kept_energy(values, 2) == pytest.approx(20 / 22)


def test_vbmf_finds_the_rank_of_low_rank_plus_noise_and_refuses_pure_noise():
    for rank, shape in [(10, (64, 200)), (5, (150, 60))]:
        matrix = _low_rank_plus_noise(shape, rank, 0.5, seed=rank)
        values = np.linalg.svd(matrix, compute_uv=False)
        assert vbmf_rank(values, shape) == rank
    noise = np.random.default_rng(9).normal(size=(64, 200))
    assert vbmf_rank(np.linalg.svd(noise, compute_uv=False), noise.shape) is None
    assert vbmf_rank(np.array([3.0, 1.0]), (2, 9)) is None  # too small to estimate noise


def test_rounding_and_mac_target():
    assert round_up(1, 8, 64) == 8
    assert round_up(9, 8, 64) == 16
    assert round_up(61, 8, 60) == 60
    assert group_multiple(8, 2) == 4 and group_multiple(8, 3) == 8 and group_multiple(8, 16) == 1
    assert largest_within([8, 16, 24, 32], lambda r: r * 10, 250) == 24
    assert largest_within([8, 16], lambda r: r * 10, 50) is None
