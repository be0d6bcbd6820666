"""Pairs folders and SAXS detector files: EDF written here reads back, matching by stem, scaling rules."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nanowire_ssl.errors import ImageReadError, NanowireSSLError
from napari_nanowire_ssl.pairvae import data
from napari_nanowire_ssl.pairvae.data import (
    load_pairs,
    load_saxs,
    load_sem,
    pair_files,
    read_edf,
    read_saxs_raw,
    saxs_to_unit,
    write_synthetic_pairs,
)
from napari_nanowire_ssl.pairvae.scattering import log_scale


def write_edf(path, array: np.ndarray, data_type: str, byte_order: str, *, extra: str = "") -> None:
    """An EDF file as ESRF writes it: a '{ key = value ; }' header padded to 512 bytes, then the pixels."""
    big = byte_order == "HighByteFirst"
    lines = (f"HeaderID = EH:000001:000000:000000 ;\nImage = 1 ;\nByteOrder = {byte_order} ;\n"
             f"DataType = {data_type} ;\nDim_1 = {array.shape[1]} ;\nDim_2 = {array.shape[0]} ;\n"
             f"Size = {array.nbytes} ;\n{extra}")
    header = ("{\n" + lines).ljust(510) + "}\n"
    assert len(header) == 512
    path.write_bytes(header.encode() + array.astype(array.dtype.newbyteorder(">" if big else "<")).tobytes())


def test_edf_written_here_reads_back_in_both_byte_orders(tmp_path):
    counts = np.arange(15, dtype=np.uint16).reshape(3, 5) * 1000  # 0x0A / 0x0D bytes occur: not header newlines
    write_edf(tmp_path / "a.edf", counts, "UnsignedShort", "HighByteFirst")
    assert np.array_equal(read_edf(tmp_path / "a.edf"), counts)
    values = np.linspace(-1, 5, 12, dtype=np.float32).reshape(4, 3)
    write_edf(tmp_path / "b.edf", values, "FloatValue", "LowByteFirst")
    assert np.array_equal(read_saxs_raw(tmp_path / "b.edf"), values)
    write_edf(tmp_path / "c.edf", np.array([[10, 10]], np.int32), "SignedInteger", "LowByteFirst")
    assert read_edf(tmp_path / "c.edf").tolist() == [[10, 10]]


def test_bad_edf_files_are_named_in_one_line(tmp_path):
    write_edf(tmp_path / "z.edf", np.ones((2, 2), np.uint16), "UnsignedShort", "LowByteFirst",
              extra="Compression = gzip ;\n")
    with pytest.raises(ImageReadError, match=r"z\.edf: compressed EDF \(gzip\) is not supported"):
        read_edf(tmp_path / "z.edf")
    write_edf(tmp_path / "t.edf", np.ones((4, 4), np.uint16), "UnsignedShort", "LowByteFirst")
    (tmp_path / "t.edf").write_bytes((tmp_path / "t.edf").read_bytes()[:-3])
    with pytest.raises(ImageReadError, match=r"t\.edf: EDF data truncated \(29 of 32 bytes\)"):
        read_edf(tmp_path / "t.edf")
    (tmp_path / "x.edf").write_bytes(b"not an edf at all")
    with pytest.raises(ImageReadError, match=r"x\.edf: not an EDF file"):
        read_edf(tmp_path / "x.edf")


def test_hdf5_without_h5py_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    (tmp_path / "p.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ImageReadError, match=r"p\.h5: reading HDF5 needs h5py, which is not installed"):
        read_saxs_raw(tmp_path / "p.h5")


def test_saxs_scaling_rules():
    assert saxs_to_unit(np.array([[0, 255]], np.uint8)).tolist() == [[0, 1]]  # precomputed picture
    already = np.array([[0.0, 0.25]], np.float32)
    assert np.array_equal(saxs_to_unit(already), already)  # float in [0, 1]: kept
    counts = np.array([[-2, 0, 9, 99]], np.float32)  # detector counts, -2 = masked pixel
    assert np.allclose(saxs_to_unit(counts), [[0, 0, np.log(10) / np.log(100), 1]])
    assert np.allclose(saxs_to_unit(counts), log_scale(counts))


def test_pair_files_match_stems_and_name_the_unmatched_file(tmp_path):
    for sub in ("saxs", "sem"):
        (tmp_path / sub).mkdir()
    np.save(tmp_path / "saxs" / "ignored.npy", np.zeros(2))  # not a SAXS type: ignored
    tifffile.imwrite(tmp_path / "saxs" / "a.tif", np.ones((8, 8), np.float32))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "sem" / "a.png")
    assert [s for s, _, _ in pair_files(tmp_path)] == ["a"]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "sem" / "b.png")
    with pytest.raises(NanowireSSLError, match=r"sem/b\.png: has no SAXS partner \(expected .*saxs/b\.<ext>\)"):
        pair_files(tmp_path)
    (tmp_path / "sem" / "b.png").unlink()
    tifffile.imwrite(tmp_path / "saxs" / "c.tif", np.ones((8, 8), np.float32))
    with pytest.raises(NanowireSSLError, match=r"saxs/c\.tif: has no SEM partner"):
        pair_files(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "saxs" / "c.png")
    with pytest.raises(NanowireSSLError, match=r"saxs/c\.tif: another file in saxs/ has the stem 'c' \(c\.png\)"):
        pair_files(tmp_path)
    with pytest.raises(NanowireSSLError, match="saxs/ is missing"):
        pair_files(tmp_path / "sem")


def test_synthetic_pairs_folder_loads_with_groups_and_binary_sem(tmp_path):
    rows = write_synthetic_pairs(tmp_path, 2, size=48, seed=3, morphologies=("lamellae", "spheres"))
    assert [r["stem"] for r in rows] == ["lamellae_0000", "lamellae_0001", "spheres_0000", "spheres_0001"]
    pairs = load_pairs(tmp_path, 32)
    assert pairs.saxs.shape == pairs.sem.shape == (4, 32, 32)
    assert pairs.groups == ["lamellae", "lamellae", "spheres", "spheres"]
    assert set(np.unique(pairs.sem)) == {0.0, 1.0}
    assert pairs.saxs.min() >= 0 and pairs.saxs.max() <= 1
    # The Otsu-binarised SEM rendering recovers the volume fraction the generator reported.
    sem = load_sem(tmp_path / "sem" / "spheres_0000.png", 48)
    assert sem.mean() == pytest.approx(rows[2]["volume_fraction"], abs=0.03)
    again = tmp_path / "again"
    write_synthetic_pairs(again, 2, size=48, seed=3, morphologies=("lamellae", "spheres"))
    assert np.array_equal(load_saxs(again / "saxs" / "spheres_0001.tif", 48),
                          load_saxs(tmp_path / "saxs" / "spheres_0001.tif", 48))
    (tmp_path / data.LABELS_FILE).write_text("stem,morphology\nlamellae_0000,lamellae\n")
    with pytest.raises(NanowireSSLError, match=r"labels\.csv: has no row for the pair 'lamellae_0001'"):
        load_pairs(tmp_path, 32)
