"""An .npz is checked from its array headers before anything is decompressed, and what it may
expand to is capped: a small file claiming gigabytes is refused without reading them."""

from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

from graphopt.calibration import MAX_NPZ_BYTES, NpzData, load_npz, npz_headers
from graphopt.errors import GraphoptError
from graphopt.model_io import resolve_model


def _claiming_npz(path, arrays: dict[str, tuple[tuple[int, ...], str]]):
    """An .npz whose members' headers claim ``shape``/``dtype`` but hold 1 MiB of zeros: the
    cheap stand-in for a zip bomb (a reader that trusts the header allocates it all)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, (shape, dtype) in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_2_0(member, header)
                member.write(bytes(1 << 20))
    return path


@pytest.fixture
def mlp():
    return resolve_model("zoo:mlp")


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def test_headers_are_read_without_the_data(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, input=np.ones((3, 256), np.float32), labels=np.arange(3))
    assert npz_headers(path) == {"input": ((3, 256), np.dtype(np.float32)),
                                 "labels": ((3,), np.dtype(np.int64))}


@pytest.mark.parametrize(("arrays", "message"), [
    ({"evil": ((10**9, 256), "<f4")}, "unexpected \\['evil'\\]"),
    ({"input": ((10**9, 256), "<f8")}, "dtype float64"),
    ({"input": ((10**9, 255), "<f4")}, "size 255 on axis 1"),
    ({"input": ((10**7, 256), "<f4")}, "expand to 9.54 GiB"),
])
def test_bombs_are_refused_from_their_headers(tmp_path, mlp, arrays, message):
    path = _claiming_npz(tmp_path / "bomb.npz", arrays)
    assert path.stat().st_size < 64 * 1024

    def load():
        with pytest.raises(GraphoptError, match=message):
            NpzData(mlp, path)

    assert _peak_mib(load) < 16


def test_the_cap_applies_to_load_npz_too(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, input=np.ones((4, 256), np.float32))
    assert load_npz(path)["input"].shape == (4, 256)
    with pytest.raises(GraphoptError, match="more than"):
        load_npz(path, max_bytes=1024)
    assert MAX_NPZ_BYTES >= 1 << 30


def test_object_arrays_are_refused_without_unpickling(tmp_path, mlp):
    path = tmp_path / "d.npz"
    np.savez(path, input=np.array([{"a": 1}], dtype=object))
    with pytest.raises(GraphoptError, match="Python objects"):
        NpzData(mlp, path)


def test_bomb_through_the_cli_is_one_line(tmp_path, run_cli):
    path = _claiming_npz(tmp_path / "bomb.npz", {"input": ((10**7, 256), "<f4")})
    code, _, err = run_cli("optimize", "zoo:mlp", "-o", str(tmp_path / "o.onnx"),
                           "--inputs", str(path))
    assert code == 2 and "expand to" in err and len(err.strip().splitlines()) == 1, err
