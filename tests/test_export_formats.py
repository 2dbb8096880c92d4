"""The stack exports (lcrec, minionerec, openonerec, hf-tokenizer), the token grid and lookup.

Every round trip reads the export back with a reader written here from the stacks' published
conventions (LC-Rec / LETTER ``data.py``, MiniOneRec ``data.py`` / ``evaluate.py``, OpenOneRec
``data/onerec_data/*`` and ``expand_qwen3_vocab.py``), not with sidkit's own reader.
"""

import ast
import csv
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sidkit.cli import app
from sidkit.dedup.suffix import assign_suffix

from conftest import planted, write_items

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(r):
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, r.output
    return lines[0]


def write_codes(path, ids, codes, sizes, suffix=None):
    codes = np.asarray(codes, np.int32)
    if suffix is None:
        suffix = assign_suffix(codes, np.array(ids, dtype=object))
    t = pa.table({"item_id": list(ids), "sid": pa.array(codes.tolist(), pa.list_(pa.int32())),
                  "suffix": pa.array(np.asarray(suffix, np.int32))})
    pq.write_table(t.replace_schema_metadata({b"sidkit": json.dumps({"codebook_sizes": sizes}).encode()}), path)
    return path


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    ids = [f"it{i:03d}" for i in range(n)]
    codes = rng.integers(0, 4, size=(n, 3))
    codes[:, 0] = np.arange(n) % 8  # a first level that uses 8 of 10 codes
    write_codes(tmp_path / "codes.parquet", ids, codes, [10, 4, 4])
    titles = [f"Title {i}\twith a tab" for i in range(n)]
    titles[3] = "=HYPERLINK(\"x\") 'quoted', \"double\""
    pq.write_table(pa.table({"item_id": ids, "title": titles, "description": [f"desc {i}" for i in range(n)],
                             "brand": [f"b{i % 3}" for i in range(n)]}), tmp_path / "items.parquet")
    users = np.repeat(np.arange(8), 7)
    items = rng.integers(0, n, size=len(users))
    ts = rng.permutation(len(users)).astype(np.int64)
    inter_ids = [ids[i] for i in items] + ["not-in-table"]
    pq.write_table(pa.table({"user_id": np.append(users, 0), "item_id": inter_ids, "timestamp": np.append(ts, 999)}),
                   tmp_path / "inter.parquet")
    sfx = assign_suffix(codes.astype(np.int32), np.array(ids, dtype=object))
    return {"dir": tmp_path, "ids": ids, "codes": codes, "suffix": sfx, "users": users, "items": items, "ts": ts, "titles": titles}


def full_sid(codes, s, L):
    letters = "abcdefgh"
    return [f"<{letters[l]}_{int(c)}>" for l, c in enumerate(codes)] + [f"<{letters[L]}_{int(s)}>"]


# --- LC-Rec / LETTER -------------------------------------------------------------------------------

def read_lcrec(folder, dataset):
    """LC-Rec data.py: inters = json.load(NAME.inter.json); indices = json.load(NAME.index.json);
    "".join(indices[str(i)]) for every item of a user; item_feat[str(i)]["title"]; leave-one-out
    from the sequences (items[-1] test, items[-2] valid)."""
    inters = json.loads((folder / f"{dataset}.inter.json").read_text())
    indices = json.loads((folder / f"{dataset}.index.json").read_text())
    feats = json.loads((folder / f"{dataset}.item.json").read_text())
    train, valid, test = [], [], []
    for items in inters.values():
        for i in items:
            assert isinstance(i, int)
            "".join(indices[str(i)])  # KeyError if the index keys were not the item indices
            feats[str(i)]["title"].strip()
        test.append(("".join(indices[str(items[-1])]), [indices[str(i)] for i in items[:-1]]))
        valid.append(items[-2])
        train.extend(items[:-2])
    return inters, indices, feats, test


def test_lcrec_round_trip(data):
    d = data["dir"]
    out = d / "lc"
    r = run("export", d / "codes.parquet", "--format", "lcrec", "-o", out, "--name", "Office", "--interactions",
            d / "inter.parquet", "--items", d / "items.parquet", "--text-cols", "description,brand", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert sorted(info["files"]) == ["Office.id_map.parquet", "Office.index.json", "Office.inter.json", "Office.item.json"]
    assert any("not in the SID table" in w for w in info["warnings"])
    inters, indices, feats, _ = read_lcrec(out, "Office")
    n = len(data["ids"])
    assert list(indices) == [str(i) for i in range(n)]
    idmap = pq.read_table(out / "Office.id_map.parquet").to_pydict()
    assert idmap["index"] == list(range(n))
    # the same SID per item as the source table
    for k, iid in zip(idmap["index"], idmap["item_id"]):
        j = data["ids"].index(iid)
        assert indices[str(k)] == full_sid(data["codes"][j], data["suffix"][j], 3)
    # full SIDs are collision-free
    assert len({"".join(v) for v in indices.values()}) == n
    # interactions: per user, in time order, as indices of the same items
    for u in range(8):
        m = data["users"] == u
        order = np.argsort(data["ts"][m], kind="stable")
        want = [data["ids"][i] for i in data["items"][m][order]]
        assert [idmap["item_id"][k] for k in inters[str(u)]] == want
    j = data["ids"].index("it003")
    assert feats[str(idmap["item_id"].index("it003"))]["title"] == " ".join(data["titles"][j].split())
    assert feats["0"]["description"] == "desc 0 b0"


def test_lcrec_without_extras_and_atomic_on_error(data):
    d = data["dir"]
    out = d / "lc"
    assert run("export", d / "codes.parquet", "--format", "lcrec", "-o", out, "--quiet").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["items.id_map.parquet", "items.index.json"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a failing export (bad title column) leaves the existing folder as it was, and no temp litter
    r = run("export", d / "codes.parquet", "--format", "lcrec", "-o", out, "--items", d / "items.parquet", "--title-col", "nope")
    assert "--title-col" in one_line_error(r)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in d.iterdir() if p.name.startswith(".lc.")]


# --- MiniOneRec ------------------------------------------------------------------------------------

def read_minionerec(folder, name):
    """MiniOneRec: info file lines split on tabs (evaluate.py: sid, title); CSVs read with
    pandas-like csv and eval of the list columns (data.py); items keyed by the first three
    tokens of index.json (data.py _convert_to_semantic_ids)."""
    info = [line.rstrip("\n").split("\t") for line in (folder / "info" / f"{name}.txt").open(encoding="utf-8")]
    index = json.loads((folder / "index" / f"{name}.index.json").read_text())
    splits = {}
    for s in ("train", "valid", "test"):
        with (folder / s / f"{name}.csv").open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            r["history_item_sid"] = ast.literal_eval(r["history_item_sid"])
            r["history_item_id"] = ast.literal_eval(r["history_item_id"])
            r["history_item_title"] = ast.literal_eval(r["history_item_title"])
        splits[s] = rows
    keyed = {v[0] + v[1] + v[2]: k for k, v in index.items()}
    return info, index, keyed, splits


def test_minionerec_round_trip_collision_free(data, tmp_path):
    d = data["dir"]
    n = len(data["ids"])
    # three collision-free core tokens (what ZCR gives): every item its own third code
    codes = data["codes"].copy()
    codes[:, 2] = np.arange(n)
    write_codes(d / "zcr.parquet", data["ids"], codes, [10, 4, 64])
    out = d / "mini"
    r = run("export", d / "zcr.parquet", "--format", "minionerec", "-o", out, "--name", "Office_Products",
            "--interactions", d / "inter.parquet", "--items", d / "items.parquet", "--tokens-file", d / "tok.txt", "--json")
    assert r.exit_code == 0, r.output
    info, index, keyed, splits = read_minionerec(out, "Office_Products")
    idmap = pq.read_table(out / "Office_Products.id_map.parquet").to_pydict()
    assert len(keyed) == n  # every item survives MiniOneRec's 3-token key
    assert len(info) == n and all(len(x) == 3 for x in info)
    for sid, title, k in info:
        j = data["ids"].index(idmap["item_id"][int(k)])
        assert sid == "".join(f"<{'abc'[l]}_{int(c)}>" for l, c in enumerate(codes[j]))
        assert keyed[sid] == k
        assert title == " ".join(data["titles"][j].split())
    # leave-one-out: one test and one valid row per user with >= 3 interactions, history <= 10
    assert len(splits["test"]) == len(splits["valid"]) == 8
    for s in ("train", "valid", "test"):
        for row in splits[s]:
            assert len(row["history_item_sid"]) <= 10
            assert row["item_sid"] == "".join(index[row["item_id"]])
            assert row["history_item_sid"] == ["".join(index[str(h)]) for h in row["history_item_id"]]
    for row in splits["test"]:
        u = int(row["user_id"])
        m = data["users"] == u
        seq = [data["ids"][i] for i in data["items"][m][np.argsort(data["ts"][m], kind="stable")]]
        assert idmap["item_id"][int(row["item_id"])] == seq[-1]
        assert [idmap["item_id"][h] for h in row["history_item_id"]] == seq[-11:-1]
    grid = (d / "tok.txt").read_text().split()
    assert grid == [f"<a_{c}>" for c in range(10)] + [f"<b_{c}>" for c in range(4)] + [f"<c_{c}>" for c in range(64)]


def test_minionerec_refuses_collisions_and_four_levels(data):
    d = data["dir"]
    e = one_line_error(run("export", d / "codes.parquet", "--format", "minionerec", "-o", d / "m"))
    assert "share their 3 tokens" in e and "--levels 3 --dedup zcr" in e and "--levels 2" in e
    assert not (d / "m").exists()
    write_codes(d / "c4.parquet", data["ids"], np.column_stack([data["codes"], np.arange(60)]), [10, 4, 4, 64])
    e = one_line_error(run("export", d / "c4.parquet", "--format", "minionerec", "-o", d / "m"))
    assert "exactly 3 tokens" in e


def test_minionerec_two_levels_plus_suffix(data):
    d = data["dir"]
    codes2 = data["codes"][:, :2]
    write_codes(d / "c2.parquet", data["ids"], codes2, [10, 4])
    out = d / "m2"
    assert run("export", d / "c2.parquet", "--format", "minionerec", "-o", out, "--quiet").exit_code == 0
    index = json.loads((out / "index" / "items.index.json").read_text())
    assert all(len(v) == 3 for v in index.values())
    assert len({"".join(v) for v in index.values()}) == len(index)


# --- OpenOneRec ------------------------------------------------------------------------------------

def test_openonerec_round_trip(data):
    d = data["dir"]
    out = d / "oo"
    r = run("export", d / "codes.parquet", "--format", "openonerec", "-o", out, "--json")
    assert r.exit_code == 0, r.output
    # data/onerec_data/*: pid2sid = dict(zip(df['pid'], df['sid'])); SID_FORMAT with code[0..2]
    df = pq.read_table(out / "pid2sid.parquet").to_pydict()
    pid2sid = dict(zip(df["pid"], df["sid"]))
    fmt = "<|sid_begin|><s_a_{c0}><s_b_{c1}><s_c_{c2}><|sid_end|>"
    for j, iid in enumerate(data["ids"]):
        code = pid2sid[iid]
        assert list(code) == [int(c) for c in data["codes"][j]]
        sid = fmt.format(c0=code[0], c1=code[1], c2=code[2])
        assert data["ids"][j] in run_lookup(d / "codes.parquet", sid, "<s_a_12>")
    # expand_qwen3_vocab.py: s_a_0..K-1, s_b_.., s_c_.., then <|sid_begin|>, <|sid_end|>, one a line
    tokens = [t.strip() for t in (out / "added_tokens.txt").read_text().splitlines() if t.strip()]
    want = [f"<s_{l}_{i}>" for l, k in zip("abc", (10, 4, 4)) for i in range(k)] + ["<|sid_begin|>", "<|sid_end|>"]
    assert tokens == want


def run_lookup(codes, sid, fmt=None):
    from sidkit import lookup

    return lookup(codes, sid, token_format=fmt)


# --- token grid --------------------------------------------------------------------------------------

def test_token_grid_is_stable_across_encode_refresh(tmp_path):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=8)
    ids = [f"i{k:03d}" for k in range(len(X))]
    write_items(tmp_path / "a.parquet", ids[:60], X[:60])
    write_items(tmp_path / "b.parquet", ids, X + np.float32(0.001))
    model = tmp_path / "m"
    assert run("fit", tmp_path / "a.parquet", "--out", model, "--method", "rqkmeans", "-K", "16", "-L", "3", "--quiet").exit_code == 0
    assert run("encode", model, tmp_path / "b.parquet", "-o", tmp_path / "codes2.parquet", "--quiet").exit_code == 0
    g1, g2 = tmp_path / "g1.txt", tmp_path / "g2.txt"
    # the suffix level is sized explicitly: how far the refresh's suffixes reach depends on the
    # k-means of this CPU (16, the default, is too few on some)
    assert run("export", model, "-f", "tokens", "-o", tmp_path / "t1.csv", "--tokens-file", g1, "--suffix-size", "64", "-q").exit_code == 0
    r = run("export", tmp_path / "codes2.parquet", "-f", "tokens", "-o", tmp_path / "t2.csv", "--tokens-file", g2, "--suffix-size", "64", "-q")
    assert r.exit_code == 0, r.output
    assert g1.read_bytes() == g2.read_bytes()
    grid = g1.read_text().split()
    assert len(grid) == 3 * 16 + 64 and len(set(grid)) == len(grid)  # 3 levels of 16, the suffix level of 64
    assert grid[:2] == ["<a_0>", "<a_1>"] and grid[-1] == "<d_63>"
    # every token an export writes is in the grid
    used = set(re.findall(r"<[a-d]_\d+>", (tmp_path / "t2.csv").read_text()))
    assert used <= set(grid)


def test_token_format_option_and_validation(data):
    d = data["dir"]
    r = run("export", d / "codes.parquet", "-f", "index-json", "--token-format", "<s_{level}_{code}>")
    assert r.exit_code == 0
    first = json.loads(r.stdout)["it000"]
    assert first[0].startswith("<s_a_") and first[-1].startswith("<s_d_")
    for bad in ("<{level}>", "{level}{code}", "<{level}_{code}_{code}>", "<{lvl}_{level}_{code}>", "< {level}_{code}>"):
        e = one_line_error(run("export", d / "codes.parquet", "-f", "tokens", "--token-format", bad))
        assert "--token-format" in e
    e = one_line_error(run("export", d / "codes.parquet", "--format", "lcrec", "-o", d / "x", "--name", "Office.v2"))
    assert "--name" in e and not (d / "x").exists()


def test_tokens_file_needs_sizes_and_suffix_size(tmp_path):
    ids = [f"i{k}" for k in range(6)]
    codes = np.array([[0, 0]] * 6)
    path = tmp_path / "c.csv"
    path.write_text("item_id,sid_0,sid_1,suffix\n" + "".join(f"{i},{a},{b},{k}\n" for k, (i, (a, b)) in enumerate(zip(ids, codes))))
    e = one_line_error(run("export", path, "-f", "tokens", "-o", tmp_path / "o.csv", "--tokens-file", tmp_path / "g.txt"))
    assert "--codebook-size" in e
    # 6 items on one core SID need suffixes 0..5; a suffix level of 4 is too small
    e = one_line_error(run("export", path, "-f", "tokens", "-o", tmp_path / "o.csv", "--tokens-file", tmp_path / "g.txt",
                           "--codebook-size", "4", "--suffix-size", "4"))
    assert "--suffix-size" in e
    assert run("export", path, "-f", "tokens", "-o", tmp_path / "o.csv", "--tokens-file", tmp_path / "g.txt",
               "--codebook-size", "4", "--suffix-size", "8", "-q").exit_code == 0
    assert len((tmp_path / "g.txt").read_text().split()) == 4 + 4 + 8


# --- lookup ------------------------------------------------------------------------------------------

def test_lookup_collided_full_and_missing(data):
    from sidkit import lookup
    from sidkit.formats.lookup import SidIndex

    d = data["dir"]
    codes, sfx, ids = data["codes"], data["suffix"], data["ids"]
    j = int(np.flatnonzero(sfx == 1)[0])  # an item of a collided core SID
    core = "".join(full_sid(codes[j], 0, 3)[:3])
    group = [ids[k] for k in range(len(ids)) if (codes[k] == codes[j]).all()]
    assert len(group) >= 2
    full = "".join(full_sid(codes[j], sfx[j], 3))
    queries = [full, core, f"<|sid_begin|>{core}<|sid_end|>", " " + full + " ", "<a_9><b_0><c_0>", "<a_99><b_0><c_0><d_0>",
               "<b_1><a_1><c_1>", "<a_1><b_1>", "garbage", "", full + "<e_0>", "<a_1><b_1><c_1><d_999>"]
    res = lookup(d / "codes.parquet", queries)
    assert res[0] == [ids[j]]
    assert sorted(res[1]) == sorted(group) == sorted(res[2])
    assert res[3] == [ids[j]]
    assert all(r == [] for r in res[4:])
    # every item's full SID finds exactly itself (vectorised over the whole batch)
    idx = SidIndex.from_table(d / "codes.parquet")
    allq = ["".join(full_sid(codes[k], sfx[k], 3)) for k in range(len(ids))]
    assert idx.lookup(allq) == [[i] for i in ids]
    r = run("lookup", d / "codes.parquet", full, core, "nope", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc[0] == {"sid": full, "item_ids": [ids[j]]} and doc[2]["item_ids"] == []
    r = run("lookup", d / "codes.parquet", full)
    assert r.stdout.strip().split("\t") == [full, ids[j]]


# --- Hugging Face tokenizer ------------------------------------------------------------------------

def make_tiny_model(folder):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from safetensors.numpy import save_file

    vocab = {"[UNK]": 0, "[PAD]": 1, "hello": 2, "world": 3, "item": 4}
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")
    folder.mkdir()
    fast.save_pretrained(str(folder))
    emb = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    save_file({"model.embed_tokens.weight": emb}, str(folder / "model.safetensors"))
    return emb


def test_hf_tokenizer_export(data):
    d = data["dir"]
    emb = make_tiny_model(d / "base")
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    out = d / "tok"
    r = run("export", d / "codes.parquet", "--format", "hf-tokenizer", "--base", d / "base", "-o", out, "--json")
    assert r.exit_code == 0, r.output
    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    grid = [f"<a_{c}>" for c in range(10)] + [f"<{l}_{c}>" for l in "bc" for c in range(4)] + [f"<d_{c}>" for c in range(4)]
    init = load_file(str(out / "sid_token_init.safetensors"))
    assert init["sid_token_init"].shape == (len(grid), 4)
    np.testing.assert_allclose(init["sid_token_init"], np.repeat(emb.mean(0)[None], len(grid), 0))
    assert init["token_ids"].tolist() == list(range(5, 5 + len(grid)))  # grid order, after the base vocabulary
    for t, i in zip(grid, init["token_ids"]):
        enc = tok(t, add_special_tokens=False).input_ids
        assert enc == [int(i)]
        assert tok.decode(enc) == t
    # a whole SID is one id per token, decoding back to the same string
    sid = "".join(full_sid(data["codes"][0], data["suffix"][0], 3))
    enc = tok(sid, add_special_tokens=False).input_ids
    assert len(enc) == 4 and tok.decode(enc).replace(" ", "") == sid
    # a base without weights, or without transformers' files, is a one-line error
    (d / "base" / "model.safetensors").unlink()
    e = one_line_error(run("export", d / "codes.parquet", "--format", "hf-tokenizer", "--base", d / "base", "-o", d / "t2"))
    assert "--base" in e and not (d / "t2").exists()


def test_hf_tokenizer_needs_base(data):
    d = data["dir"]
    e = one_line_error(run("export", d / "codes.parquet", "--format", "hf-tokenizer", "-o", d / "t"))
    assert "--base" in e


def test_hf_tokenizer_without_transformers_says_how_to_install(data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    d = data["dir"]
    (d / "base").mkdir()
    e = one_line_error(run("export", d / "codes.parquet", "--format", "hf-tokenizer", "--base", d / "base", "-o", d / "t"))
    assert "pip install 'sidkit[llm]'" in e and not (d / "t").exists()


def test_lcrec_export_matches_the_published_scientific_files(tmp_path):
    """Exporting the published LETTER SIDs of Scientific with the shared interactions gives
    byte-for-byte the same index and inter JSON objects that LC-Rec/LETTER ship."""
    from conftest import SHARED_DATA

    root = SHARED_DATA / "amazon18_scientific"
    ref = root / "raw" / "reference_sids" / "letter_native.Scientific.index.json"
    if not ref.exists():
        pytest.skip(f"{ref} is absent")
    out = tmp_path / "Scientific"
    r = run("export", ref, "--format", "lcrec", "-o", out, "--name", "Scientific", "--interactions",
            root / "interactions.parquet", "--items", root / "items.parquet", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "Scientific.inter.json").read_text()) == json.loads((root / "raw" / "Scientific.inter.json").read_text())
    assert json.loads((out / "Scientific.index.json").read_text()) == json.loads(ref.read_text())
    items = json.loads((out / "Scientific.item.json").read_text())
    assert items.keys() == json.loads((root / "raw" / "Scientific.item.json").read_text()).keys()


def test_item_text_without_a_description_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sidkit.errors import SchemaError
    from sidkit.formats.stacks import read_item_text

    pq.write_table(pa.table({"item_id": ["a", "b"], "title": ["A", "B"]}), tmp_path / "items.parquet")
    titles, descs, missing = read_item_text(tmp_path / "items.parquet", ["b", "a"], id_col=None, title_col="title", text_cols=None)
    assert titles == ["B", "A"] and missing == 0 and all(not d for d in (descs or ["", ""]))
    with pytest.raises(SchemaError, match="no text column 'description'"):  # asked for by name: required
        read_item_text(tmp_path / "items.parquet", ["a"], id_col=None, title_col="title", text_cols=["description"])


@pytest.mark.parametrize("dedup", ["zcr", "none", "suffix"])
def test_all_zero_suffix_of_a_zcr_table_is_not_exported(data, dedup):
    """A table made with --dedup zcr (or none) whose suffixes are all 0 exports its L core tokens:
    no constant extra token, no suffix level in the token grid. A suffix-deduplicated table keeps
    the suffix token even when it is all 0 (its token count must not change on a refresh)."""
    d = data["dir"]
    n = len(data["ids"])
    codes = data["codes"].copy()
    codes[:, 2] = np.arange(n)  # distinct 3-token SIDs, as ZCR gives
    t = pa.table({"item_id": data["ids"], "sid": pa.array(codes.astype(np.int32).tolist(), pa.list_(pa.int32())),
                  "suffix": pa.array(np.zeros(n, np.int32))})
    meta = {"codebook_sizes": [10, 4, 64], "dedup": {"method": dedup}}
    pq.write_table(t.replace_schema_metadata({b"sidkit": json.dumps(meta).encode()}), d / "t.parquet")
    r = run("export", d / "t.parquet", "--format", "lcrec", "-o", d / "lc", "--name", "X", "--tokens-file", d / "tok.txt")
    assert r.exit_code == 0, r.output
    index = json.loads((d / "lc" / "X.index.json").read_text())
    grid = (d / "tok.txt").read_text().split()
    if dedup == "suffix":
        assert all(len(v) == 4 and v[3] == "<d_0>" for v in index.values())
        assert len(grid) == 10 + 4 + 64 + 64
    else:
        assert all(len(v) == 3 for v in index.values())
        assert grid == [f"<a_{c}>" for c in range(10)] + [f"<b_{c}>" for c in range(4)] + [f"<c_{c}>" for c in range(64)]
    r = run("export", d / "t.parquet", "--format", "tokens")
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[1]
    assert first.endswith("<d_0>\"") == (dedup == "suffix"), first
    # a ZCR table where a group was too large for the last codebook keeps its suffix
    sfx = np.zeros(n, np.int32)
    sfx[1] = 1
    pq.write_table(t.set_column(2, "suffix", pa.array(sfx)).replace_schema_metadata({b"sidkit": json.dumps(meta).encode()}),
                   d / "t2.parquet")
    r = run("export", d / "t2.parquet", "--format", "index-json", "-o", d / "t2.json")
    assert r.exit_code == 0, r.output
    assert all(len(v) == 4 for v in json.loads((d / "t2.json").read_text()).values())
