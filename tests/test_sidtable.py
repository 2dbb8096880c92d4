"""sidkit.io.sidtable: every layout gives the same table; every bad input a one-line SidkitError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidkit.errors import DataError, InputFileError, SchemaError, SidkitError
from sidkit.dedup.suffix import assign_suffix
from sidkit.io.codes import write_codes
from sidkit.io.sidtable import read_sid_table
from sidkit.metrics import core_report

REF = Path("/work/shared/data/amazon18_scientific/raw/reference_sids")

IDS = np.array([f"it{i:03d}" for i in range(40)], dtype=object)
CODES = np.random.default_rng(0).integers(0, 5, size=(40, 3)).astype(np.int32)
CODES[1] = CODES[0]
CODES[2] = CODES[0]
SFX = assign_suffix(CODES, IDS)


def _letters(row):
    return [f"<{'abcd'[l]}_{c}>" for l, c in enumerate(row)]


def write_all(tmp: Path) -> dict[str, Path]:
    f = {}
    f["sidkit"] = tmp / "codes.parquet"
    write_codes(f["sidkit"], IDS, CODES, SFX, {"method": "test", "codebook_sizes": [5, 5, 5]})
    f["list_parquet"] = tmp / "list.parquet"
    pq.write_table(pa.table({"id": pa.array(IDS.tolist()), "codes": pa.array(CODES.tolist(), pa.list_(pa.int64()))}), f["list_parquet"])
    f["cols_parquet"] = tmp / "cols.parquet"
    pq.write_table(pa.table({"item_id": IDS.tolist(), **{f"sid_{l}": CODES[:, l] for l in range(3)}}), f["cols_parquet"])
    f["cols_csv"] = tmp / "cols.csv"
    f["cols_csv"].write_text("item_id,c0,c1,c2\n" + "".join(f"{i},{a},{b},{c}\n" for i, (a, b, c) in zip(IDS, CODES)))
    f["list_csv"] = tmp / "list.csv"
    f["list_csv"].write_text("item_id,sid\n" + "".join(f'{i},"[{a}, {b}, {c}]"\n' for i, (a, b, c) in zip(IDS, CODES)))
    f["tokens_csv"] = tmp / "tokens.csv"
    f["tokens_csv"].write_text("item_id,sid\n" + "".join(f"{i},{''.join(_letters(r))}\n" for i, r in zip(IDS, CODES.tolist())))
    f["index_json"] = tmp / "index.json"
    f["index_json"].write_text(json.dumps({i: _letters(r) for i, r in zip(IDS.tolist(), CODES.tolist())}))
    f["index_json_suffix"] = tmp / "index_sfx.json"
    f["index_json_suffix"].write_text(json.dumps({i: _letters(list(r) + [int(s)]) for i, r, s in zip(IDS.tolist(), CODES.tolist(), SFX)}))
    return f


def test_every_layout_same_table_and_report(tmp_path):
    files = write_all(tmp_path)
    ref = core_report(CODES, [5, 5, 5], item_ids=IDS)
    for name, path in files.items():
        ids, codes, sfx, sizes, warnings = read_sid_table(path, codebook_size=None if name == "sidkit" else 5)
        assert [str(i) for i in ids] == IDS.tolist(), name
        assert np.array_equal(codes, CODES), name
        assert sizes == [5, 5, 5], name
        if name in ("sidkit", "index_json_suffix"):
            assert np.array_equal(sfx, SFX), name
        else:
            assert sfx is None, name
        assert core_report(codes, sizes, item_ids=ids) == ref, name


def test_suffix_detection_modes(tmp_path):
    files = write_all(tmp_path)
    _, codes, sfx, _, warns = read_sid_table(files["index_json_suffix"])
    assert codes.shape == (40, 3) and sfx is not None and any("suffix" in w for w in warns)
    _, codes, sfx, _, _ = read_sid_table(files["index_json_suffix"], suffix="none")
    assert codes.shape == (40, 4) and sfx is None
    _, codes, sfx, _, _ = read_sid_table(files["index_json"], suffix="last")
    assert codes.shape == (40, 2) and np.array_equal(sfx, CODES[:, 2])


def test_model_directory(tmp_path):
    write_codes(tmp_path / "codes.parquet", IDS, CODES, SFX, {"method": "t", "codebook_sizes": [8, 8, 8]})
    ids, codes, sfx, sizes, _ = read_sid_table(tmp_path)
    assert sizes == [8, 8, 8] and np.array_equal(codes, CODES)


def _one_line(e):
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


@pytest.mark.parametrize("name,content,exc,needle", [
    ("bad.json", '{"a": ["<a_1>", "<b_2>"', InputFileError, "malformed JSON"),
    ("list.json", '[["<a_1>"]]', InputFileError, "JSON object"),
    ("neg.json", '{"a": ["<a_1>", "<b_-2>"]}', DataError, "negative"),
    ("word.json", '{"a": ["<a_1>", "hello"]}', DataError, "item 'a'"),
    ("ragged.json", '{"a": ["<a_1>", "<b_2>"], "b": ["<a_1>"]}', DataError, "same length"),
    ("float.json", '{"a": [1.5, 2]}', DataError, "integer"),
    ("empty.json", "{}", DataError, "no items"),
    ("zero.csv", "", InputFileError, "empty"),
    ("header.csv", "item_id,sid_0,sid_1\n", DataError, "no rows"),
    ("text.csv", "item_id,sid_0,sid_1\na,1,2\nb,x,3\n", DataError, "'sid_0' row 1"),
    ("frac.csv", "item_id,sid_0,sid_1\na,1,2\nb,1.5,3\n", DataError, "not an integer"),
    ("neg.csv", "item_id,sid_0,sid_1\na,1,2\nb,-1,3\n", DataError, "negative"),
    ("gap.csv", "item_id,sid_0,sid_2\na,1,2\n", SchemaError, "numbered"),
    ("nocodes.csv", "item_id,price\na,1.5\n", SchemaError, "no SID columns"),
    ("dup.csv", "item_id,sid_0\na,1\na,2\n", DataError, "has 1 duplicated ids"),
    ("blank.csv", "item_id,sid_0,sid_1\na,1,2\nb,,3\n", DataError, "row 1"),
    ("ragged_str.csv", 'item_id,sid\na,"[1,2]"\nb,"[1]"\n', DataError, "same length"),
])
def test_bad_inputs(tmp_path, name, content, exc, needle):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(exc) as e:
        read_sid_table(p)
    msg = _one_line(e)
    assert needle in msg and name in msg


def test_bad_parquet_and_sizes(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_sid_table(tmp_path / "missing.parquet")
    p = tmp_path / "junk.parquet"
    p.write_bytes(b"PAR1 not really")
    with pytest.raises(InputFileError, match="junk.parquet"):
        read_sid_table(p)
    p = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"], "sid": pa.array([[1, 2], [1]], pa.list_(pa.int32()))}), p)
    with pytest.raises(DataError, match="row 1 has 1 codes"):
        read_sid_table(p)
    p = tmp_path / "floats.parquet"
    pq.write_table(pa.table({"item_id": ["a"], "sid": pa.array([[1.0, 2.5]], pa.list_(pa.float64()))}), p)
    with pytest.raises(DataError, match="integers"):
        read_sid_table(p)
    p = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"], "sid": pa.array([[1, 2], [3, 9]], pa.list_(pa.int32()))}), p)
    with pytest.raises(DataError) as e:
        read_sid_table(p, codebook_size="4,8")
    assert "code 9" in str(e.value) and "row 1" in str(e.value) and "codebook size 8" in str(e.value)
    with pytest.raises(DataError, match="3 codebook sizes"):
        read_sid_table(p, codebook_size=[4, 8, 8])
    with pytest.raises(SidkitError, match="codebook_size"):
        read_sid_table(p, codebook_size="abc")
    with pytest.raises(SchemaError, match="pass id_col"):
        read_sid_table(p, id_col="nope")
    p = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"item_id": pa.array([], pa.string()), "sid": pa.array([], pa.list_(pa.int32()))}), p)
    with pytest.raises(DataError, match="no rows"):
        read_sid_table(p)


@pytest.mark.skipif(not REF.exists(), reason="shared reference data not available")
def test_reference_index_json_reproduces_readme():
    from sidkit.metrics import sid_report

    path = REF / "rqvae_native.Scientific.index.json"
    ids, codes, sfx, _, _ = read_sid_table(path)
    assert codes.shape == (4344, 4) and sfx is None  # the 4th token is a real level here
    r = sid_report(codes, [256] * 4)
    assert round(100 * r["collision"]["collision_rate"], 1) == 12.8
    assert round(100 * r["collision"]["collided_item_fraction"], 1) == 20.4
    ids, codes, sfx, _, _ = read_sid_table(path, suffix="last")
    r3 = sid_report(codes, [256] * 3)
    assert round(100 * r3["collision"]["collision_rate"], 1) == 22.9
    letter = read_sid_table(REF / "letter_native.Scientific.index.json")[1]
    assert round(100 * sid_report(letter, 256)["collision"]["collision_rate"], 1) == 0.6
