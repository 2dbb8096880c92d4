"""Item ids are checked in one module (sidkit.io.ids): each problem has one message wherever ids
are read (a catalog, a SID table, an encode against a model, a re-dedup against a catalog)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sidkit
from sidkit.errors import DataError
from sidkit.io.ids import check_same_id_kind, id_kind
from sidkit.io.sidtable import read_sid_table
from conftest import planted, write_items


def test_id_kind_and_same_kind_check():
    assert id_kind(pa.int32()) == id_kind(pa.int64()) == "integer"
    assert id_kind(pa.string()) == id_kind(pa.large_string()) == "string"
    check_same_id_kind(pa.int32(), pa.int64(), "a.parquet", "item_id", "the model's items", "fix it")
    with pytest.raises(DataError) as e:
        check_same_id_kind(pa.string(), pa.int64(), "a.parquet", "item_id", "the model's items", "fix it")
    assert str(e.value) == "a.parquet: id column 'item_id' holds string ids but the model's items have integer ids; fix it"


def _null_message(where, col="item_id", n=1, rows="2"):
    return f"{where}: id column '{col}' has {n} null ids (rows {rows}); every item needs an id"


def test_null_and_duplicate_ids_read_the_same_in_a_catalog_and_a_sid_table(tmp_path):
    X, _, _ = planted(n_clusters=2, n_sub=2, per=5)
    n = len(X)
    ids = [f"i{k}" for k in range(n)]
    # nulls
    cat = write_items(tmp_path / "cat.parquet", ids[:2] + [None] + ids[3:], X)
    with pytest.raises(DataError) as e_cat:
        sidkit.fit(cat, out=tmp_path / "m", method="rqkmeans", levels=2, codebook_size=2)
    sid = tmp_path / "sids.parquet"
    pq.write_table(pa.table({"item_id": pa.array(ids[:2] + [None] + ids[3:]),
                             "sid": pa.array([[0, 1]] * n, pa.list_(pa.int32()))}), sid)
    with pytest.raises(DataError) as e_sid:
        read_sid_table(sid)
    assert str(e_cat.value) == _null_message(cat)
    assert str(e_sid.value) == _null_message(sid)
    # duplicates: one wording (the counts are given where the check counted them)
    dup = ids[:3] + ["i0"] + ids[4:]
    cat = write_items(tmp_path / "dup.parquet", dup, X)
    with pytest.raises(DataError) as e_cat:
        sidkit.fit(cat, out=tmp_path / "m", method="rqkmeans", levels=2, codebook_size=2)
    pq.write_table(pa.table({"item_id": pa.array(dup), "sid": pa.array([[0, k] for k in range(n)], pa.list_(pa.int32()))}), sid)
    with pytest.raises(DataError) as e_sid:
        read_sid_table(sid)
    for e, where in ((e_cat, tmp_path / "dup.parquet"), (e_sid, sid)):
        assert str(e.value) == f"{where}: id column 'item_id' has 1 duplicated ids (2 rows), e.g. 'i0'; ids must be unique"


def test_encode_with_ids_of_another_kind_than_the_model(tmp_path):
    X, _, _ = planted(n_clusters=2, n_sub=2, per=5)
    write_items(tmp_path / "items.parquet", np.arange(len(X)), X)
    sidkit.fit(tmp_path / "items.parquet", out=tmp_path / "m", method="rqkmeans", levels=2, codebook_size=2)
    write_items(tmp_path / "str.parquet", [f"i{k}" for k in range(len(X))], X)
    with pytest.raises(DataError) as e:
        sidkit.encode(tmp_path / "m", tmp_path / "str.parquet", tmp_path / "out.parquet")
    assert str(e.value) == (f"{tmp_path / 'str.parquet'}: id column 'item_id' holds string ids but the model's items have "
                            "integer ids; give the ids the same type as in the catalog the model was fitted on")
    assert not (tmp_path / "out.parquet").exists()
