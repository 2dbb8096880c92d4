"""Hostile inputs, table-driven: tampered model files (field by field), tampered slot registries,
hostile ids and words, outputs that name an input, degenerate catalogs.

Every error case asserts exit code 2, exactly one ``error: ...`` line on stderr, no traceback,
and that every file that existed before is byte-identical afterwards (and nothing new was
left behind). Cases that are legitimate behaviour assert what they produce instead.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from sidkit.cli import app
from sidkit.datasets import make_catalog, make_interactions

from conftest import write_items

runner = CliRunner()


# ------------------------------------------------------------------------------------------
# a workspace fitted once: three models (rqkmeans, rqvae, kae with bindings), a catalog,
# interactions and a codes table; every case works on a fresh copy

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    t = make_catalog(160, 8, seed=5)
    pq.write_table(t, d / "items.parquet")
    pq.write_table(make_interactions(t, 40, seed=1), d / "inter.parquet")
    for name, args in {"rqk": ["--method", "rqkmeans", "-L", "2", "-K", "8"],
                       "rqv": ["--method", "rqvae", "-L", "2", "-K", "8", "--max-steps", "30"],
                       "kae": ["--method", "kae", "--attributes", "brand,color"]}.items():
        r = runner.invoke(app, ["fit", str(d / "items.parquet"), "--out", str(d / name), "--quiet", *args])
        assert r.exit_code == 0, r.output
    given = t.slice(0, 24)  # 24 carriers of a new colour: its binding gets a routing row
    pq.write_table(given.set_column(given.schema.get_field_index("color"), "color", pa.array(["sage mist"] * 24)), d / "given.parquet")
    r = runner.invoke(app, ["bind-slot", "color", "sage mist", "--model", str(d / "kae"), "--items", str(d / "given.parquet"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["routing"], r.output
    r = runner.invoke(app, ["bind-slot", "brand", "newco", "--model", str(d / "kae"), "-q"])
    assert r.exit_code == 0, r.output
    shutil.copy(d / "rqk" / "codes.parquet", d / "codes.parquet")
    return d


@pytest.fixture
def w(base, tmp_path) -> Path:
    out = tmp_path / "w"
    shutil.copytree(base, out)
    return out


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(w: Path, argv: list[str]):
    return runner.invoke(app, [a.replace("{w}", str(w)) for a in argv])


def assert_clean_error(r, fragment: str, before: dict, after: dict):
    assert r.exit_code == 2, (r.exit_code, r.output)
    err = r.stderr.strip()
    assert "Traceback" not in r.output, r.output
    assert err.startswith("error: ") and "\n" not in err, err
    assert fragment.lower() in err.lower(), err
    assert after == before, sorted(set(after) ^ set(before)) or [k for k in before if before[k] != after.get(k)]


# ------------------------------------------------------------------------------------------
# tampering helpers

def edit_json(rel: str, fn):
    def setup(w: Path):
        p = w / rel
        doc = json.loads(p.read_text())
        doc = fn(doc)
        p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return setup


def write_bytes(rel: str, data: bytes):
    def setup(w: Path):
        (w / rel).write_bytes(data)
    return setup


def delete(rel: str):
    def setup(w: Path):
        (w / rel).unlink()
    return setup


def pop(*keys):
    def fn(d):
        x = d
        for k in keys[:-1]:
            x = x[k]
        x.pop(keys[-1])
        return d
    return fn


def put(value, *keys):
    def fn(d):
        x = d
        for k in keys[:-1]:
            x = x[k]
        x[keys[-1]] = value
        return d
    return fn


def both(*fns):
    def fn(d):
        for f in fns:
            d = f(d)
        return d
    return fn


def edit_tensors(model: str, fn, keep_fingerprint: bool = False):
    def setup(w: Path):
        p = w / model / "model.safetensors"
        t = fn(dict(load_file(str(p))))
        save_file(t, str(p))
        if not keep_fingerprint:
            edit_json(f"{model}/sidkit.json", pop("model_fingerprint"))(w)
    return setup


def edit_codes(model: str, fn):
    def setup(w: Path):
        p = w / model / "codes.parquet"
        t = pq.read_table(p)
        pq.write_table(fn(t), p)
    return setup


def edit_binding(fn):
    return edit_json("kae/slots.json", lambda d: (fn(d["bindings"][0]), d)[1])


ENC = ["encode", "{w}/%s", "{w}/items.parquet", "-o", "{w}/out.parquet"]


def enc(m: str) -> list[str]:
    return [a % m if "%s" in a else a for a in ENC]


# (name, setup, argv, message fragment)
MODEL_CASES = []
for m in ("rqk", "rqv", "kae"):
    sj = f"{m}/sidkit.json"
    MODEL_CASES += [
        (f"{m}-json-list", write_bytes(sj, b"[]"), enc(m), "holds a JSON list"),
        (f"{m}-json-empty", write_bytes(sj, b"{}"), enc(m), "empty JSON object"),
        (f"{m}-json-garbage", write_bytes(sj, b"{not json"), enc(m), "not valid JSON"),
        (f"{m}-json-binary", write_bytes(sj, b"\xff\xfe\x00"), enc(m), "not valid JSON"),
        (f"{m}-no-method", edit_json(sj, pop("method")), enc(m), "field 'method'"),
        (f"{m}-no-estimator", edit_json(sj, pop("estimator")), enc(m), "field 'estimator'"),
        (f"{m}-estimator-str", edit_json(sj, put("x", "estimator")), enc(m), "field 'estimator'"),
        (f"{m}-no-params", edit_json(sj, pop("estimator", "params")), enc(m), "field 'estimator'"),
        (f"{m}-no-fusion", edit_json(sj, pop("fusion")), enc(m), "field 'fusion'"),
        (f"{m}-no-sizes", edit_json(sj, pop("codebook_sizes")), enc(m), "field 'codebook_sizes'"),
        (f"{m}-sizes-str", edit_json(sj, put(["8", "8"], "codebook_sizes")), enc(m), "field 'codebook_sizes'"),
        (f"{m}-sizes-edited", edit_json(sj, lambda d: put([k + 1 for k in d["codebook_sizes"]], "codebook_sizes")(d)),
         enc(m), "codebook_sizes"),
        (f"{m}-levels-edited", edit_json(sj, lambda d: put(d["n_levels"] + 1, "n_levels")(d)), enc(m), "field 'n_levels'"),
        (f"{m}-dims-edited", edit_json(sj, put([9], "fusion", "dims")), enc(m), "fusion.dims"),
        (f"{m}-dims-str", edit_json(sj, put(["x"], "fusion", "dims")), enc(m), "fusion.dims"),
        (f"{m}-columns-empty", edit_json(sj, put([], "fusion", "columns")), enc(m), "fusion.columns"),
        (f"{m}-weights-negative", edit_json(sj, put([-1.0], "fusion", "weights")), enc(m), "fusion.weights"),
        (f"{m}-format-str", edit_json(sj, put("1", "format_version")), enc(m), "format_version"),
        (f"{m}-format-newer", edit_json(sj, put(99, "format_version")), enc(m), "newer than this sidkit"),
        (f"{m}-method-bogus", edit_json(sj, put("bogus", "method")), enc(m), "not supported"),
        (f"{m}-fingerprint", edit_json(sj, put("0123456789abcdef", "model_fingerprint")), enc(m), "not the ones"),
        (f"{m}-id-col-int", edit_json(sj, put(5, "input", "id_col")), enc(m), "input.id_col"),
        (f"{m}-st-missing", delete(f"{m}/model.safetensors"), enc(m), "model.safetensors is missing"),
        (f"{m}-st-garbage", write_bytes(f"{m}/model.safetensors", b"\x00" * 64), enc(m), "unreadable"),
        (f"{m}-st-truncated", lambda w, m=m: (w / m / "model.safetensors").write_bytes((w / m / "model.safetensors").read_bytes()[:200]),
         enc(m), "unreadable"),
        (f"{m}-st-other-fit", lambda w, m=m: shutil.copy(w / ("rqv" if m != "rqv" else "rqk") / "model.safetensors", w / m / "model.safetensors"),
         enc(m), "not the ones"),
        (f"{m}-codes-garbage", write_bytes(f"{m}/codes.parquet", b"PAR1garbagePAR1"), enc(m), "codes are unreadable"),
        (f"{m}-codes-no-sid", edit_codes(m, lambda t: t.drop_columns(["sid"])), enc(m), "not a sidkit codes table"),
        (f"{m}-codes-other-fit", lambda w, m=m: shutil.copy(w / ("rqv" if m != "rqv" else "rqk") / "codes.parquet", w / m / "codes.parquet"),
         enc(m), "another fit"),
        (f"{m}-codes-out-of-range", edit_codes(m, lambda t: t.set_column(1, "sid", pa.array([[999] * len(r) for r in t.column("sid").to_pylist()], pa.list_(pa.int32())))),
         enc(m), "outside the model's codebooks"),
        (f"{m}-codes-ragged", edit_codes(m, lambda t: t.set_column(1, "sid", pa.array([r[:1] if i == 3 else r for i, r in enumerate(t.column("sid").to_pylist())], pa.list_(pa.int32())))),
         enc(m), "different lengths"),
    ]
MODEL_CASES += [
    ("rqv-class-mismatch", edit_json("rqv/sidkit.json", put("rqkmeans", "method")), enc("rqv"), "estimator.class"),
    ("rqk-class-edited", edit_json("rqk/sidkit.json", put("RQVAE", "estimator", "class")), enc("rqk"), "estimator.class"),
    ("rqv-hidden-edited", edit_json("rqv/sidkit.json", put([64, 32], "estimator", "params", "hidden")), enc("rqv"), "estimator.params do not fit"),
    ("rqv-latent-edited", edit_json("rqv/sidkit.json", put(7, "estimator", "params", "latent_dim")), enc("rqv"), "estimator.params do not fit"),
    ("rqv-params-unknown", edit_json("rqv/sidkit.json", put(1, "estimator", "params", "bogus")), enc("rqv"), "estimator.params do not fit"),
    ("rqk-params-levels-more", edit_json("rqk/sidkit.json", put(3, "estimator", "params", "n_levels")), enc("rqk"), "is missing"),
    ("rqk-params-levels-fewer", edit_json("rqk/sidkit.json", put(1, "estimator", "params", "n_levels")), enc("rqk"), "codebook_sizes"),
    ("rqk-tensor-missing", edit_tensors("rqk", lambda t: {k: v for k, v in t.items() if k != "rq.codebook.1"}), enc("rqk"), "rq.codebook.1"),
    ("rqk-tensor-missing-fp", edit_tensors("rqk", lambda t: {k: v for k, v in t.items() if k != "rq.codebook.1"}, keep_fingerprint=True),
     enc("rqk"), "not the ones"),
    ("rqk-tensor-width", edit_tensors("rqk", lambda t: {k: v[:, :5].copy() for k, v in t.items()}), enc("rqk"), "fusion.dims"),
    ("rqk-tensor-rows", edit_tensors("rqk", lambda t: {**t, "rq.codebook.0": t["rq.codebook.0"][:5].copy()}), enc("rqk"), "codebook_sizes"),
    ("rqv-tensor-missing", edit_tensors("rqv", lambda t: {k: v for k, v in t.items() if not k.startswith("encoder.0.")}), enc("rqv"), "encoder.0.weight"),
    ("rqv-tensor-shape", edit_tensors("rqv", lambda t: {**t, "decoder.0.bias": t["decoder.0.bias"][:3].copy()}), enc("rqv"), "estimator.params do not fit"),
    ("kae-groups-str", edit_json("kae/sidkit.json", put("x", "estimator", "params", "groups")), enc("kae"), "estimator.params do not fit"),
    ("kae-reserved-edited", edit_json("kae/sidkit.json", lambda d: (d["estimator"]["params"]["groups"][0].__setitem__("n_reserved", 99), d)[1]),
     enc("kae"), "codebook_sizes"),
    ("kae-reservoir-missing", edit_tensors("kae", lambda t: {k: v for k, v in t.items() if not k.startswith("reservoir.")}),
     enc("kae"), "reservoir"),
    ("kae-scorer-shape", edit_tensors("kae", lambda t: {**t, "route.0.W": t["route.0.W"][:, :3].copy()}), enc("kae"), "routing scorer"),
]

SLOT_CMDS = {
    "encode": enc("kae"),
    "slots": ["slots", "--model", "{w}/kae"],
    "bind": ["bind-slot", "color", "mint", "--model", "{w}/kae"],
    "unbind": ["unbind-slot", "brand", "newco", "--model", "{w}/kae"],
}
REGISTRY_TAMPERING = [
    ("missing", delete("kae/slots.json"), "slot registry is missing"),
    ("garbage", write_bytes("kae/slots.json", b"{oops"), "not valid JSON"),
    ("list", write_bytes("kae/slots.json", b"[]"), "not a sidkit slot registry"),
    ("version-str", edit_json("kae/slots.json", put("x", "version")), "field 'version'"),
    ("version-negative", edit_json("kae/slots.json", put(-3, "version")), "field 'version'"),
    ("format", edit_json("kae/slots.json", put(2, "format")), "field 'format'"),
    ("bindings-dict", edit_json("kae/slots.json", put({}, "bindings")), "must be lists"),
    ("fingerprint", edit_json("kae/slots.json", put("0123456789abcdef", "model_fingerprint")), "belongs to another fit"),
    ("slot-str", edit_binding(lambda b: b.__setitem__("slot", "a")), "field 'slot'"),
    ("slot-9999", edit_binding(lambda b: b.__setitem__("slot", 9999)), "field 'slot'"),
    ("slot-active", edit_binding(lambda b: b.__setitem__("slot", 2)), "field 'slot'"),
    ("group-99", edit_binding(lambda b: b.__setitem__("group", 99)), "field 'group'"),
    ("word-missing", edit_binding(lambda b: b.pop("word")), "field 'word'"),
    ("word-empty", edit_binding(lambda b: b.__setitem__("word", "  ")), "field 'word'"),
    ("category-other", edit_binding(lambda b: b.__setitem__("category", "material")), "field 'category'"),
    ("aliases-str", edit_binding(lambda b: b.__setitem__("aliases", "x")), "field 'aliases'"),
    ("scorer-length", edit_binding(lambda b: b["scorer"].__setitem__("w", b["scorer"]["w"][:3])), "weights"),
    ("scorer-nan", lambda w: (w / "kae/slots.json").write_text(re.sub(r'"b": [-0-9.e]+', '"b": NaN', (w / "kae/slots.json").read_text(), count=1)),
     "field 'scorer'"),
    ("duplicate-slot", edit_json("kae/slots.json", lambda d: (d["bindings"].append(dict(d["bindings"][0], word="other")), d)[1]),
     "holds too"),
]
for name, setup, frag in REGISTRY_TAMPERING:
    for cmd, argv in SLOT_CMDS.items():
        MODEL_CASES.append((f"registry-{name}-{cmd}", setup, argv, frag))


def _model_setup(w: Path):
    """An integer-id model (for the id-type case)."""
    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    write_items(w / "int_items.parquet", list(range(40)), X)
    r = runner.invoke(app, ["fit", str(w / "int_items.parquet"), "--out", str(w / "intm"), "--method", "rqkmeans", "-L", "2", "-K", "4", "-q"])
    assert r.exit_code == 0, r.output


def _symlink(src: str, dst: str):
    def setup(w: Path):
        (w / dst).symlink_to(w / src)
    return setup


def _copy(src: str, dst: str):
    def setup(w: Path):
        shutil.copy(w / src, w / dst)
    return setup


def _text(rel: str, text: str):
    def setup(w: Path):
        (w / rel).write_text(text)
    return setup


def _noop(w: Path):
    pass


OTHER_CASES = [
    # an output that is one of the inputs
    ("encode-o-items", _noop, ["encode", "{w}/rqk", "{w}/items.parquet", "-o", "{w}/items.parquet"], "same file as the input ITEMS"),
    ("encode-o-items-link", _symlink("items.parquet", "link.parquet"), ["encode", "{w}/rqk", "{w}/items.parquet", "-o", "{w}/link.parquet"], "same file as the input ITEMS"),
    ("encode-o-model-codes", _noop, ["encode", "{w}/rqk", "{w}/items.parquet", "-o", "{w}/rqk/codes.parquet"], "model's own codes.parquet"),
    ("encode-o-model-json", _noop, ["encode", "{w}/rqk", "{w}/items.parquet", "-o", "{w}/rqk/sidkit.json"], "model's own sidkit.json"),
    ("export-o-codes-csv", _noop, ["export", "{w}/codes.parquet", "--format", "csv", "-o", "{w}/codes.parquet"], "same file as the input CODES"),
    ("export-o-codes-json", _noop, ["export", "{w}/codes.parquet", "--format", "index-json", "-o", "{w}/codes.parquet"], "same file as the input CODES"),
    ("export-o-model-codes", _noop, ["export", "{w}/rqk", "-o", "{w}/rqk/codes.parquet"], "model's own codes.parquet"),
    ("audit-html-codes", _noop, ["audit", "{w}/codes.parquet", "--html", "{w}/codes.parquet"], "same file as the input CODES"),
    ("audit-html-items", _noop, ["audit", "{w}/codes.parquet", "--items", "{w}/items.parquet", "--html", "{w}/items.parquet"], "input --items"),
    ("audit-html-inter", _noop, ["audit", "{w}/codes.parquet", "--interactions", "{w}/inter.parquet", "--html", "{w}/inter.parquet"], "input --interactions"),
    ("audit-html-baseline", _copy("codes.parquet", "b.parquet"), ["audit", "{w}/codes.parquet", "--baseline", "{w}/b.parquet", "--html", "{w}/b.parquet"], "input --baseline"),
    ("kae-plan-o-items", _noop, ["kae-plan", "{w}/items.parquet", "-o", "{w}/items.parquet"], "same file as the input ITEMS"),
    ("fit-out-holds-items", _copy("items.parquet", "rqk/items.parquet"), ["fit", "{w}/rqk/items.parquet", "--out", "{w}/rqk", "--method", "rqkmeans", "-K", "8"], "holds the input ITEMS"),
    ("fit-out-holds-inter", _copy("inter.parquet", "rqv/inter.parquet"), ["fit", "{w}/items.parquet", "--out", "{w}/rqv", "--method", "quasid", "-K", "8", "--interactions", "{w}/rqv/inter.parquet"], "holds the input --interactions"),
    ("fit-out-holds-config", _text("rqk/fit.toml", "levels = 2\n"), ["fit", "{w}/items.parquet", "--out", "{w}/rqk", "--config", "{w}/rqk/fit.toml"], "holds the input --config"),
    ("fit-out-is-items", _noop, ["fit", "{w}/items.parquet", "--out", "{w}/items.parquet"], "not a directory"),
    ("fit-out-root", _noop, ["fit", "{w}/items.parquet", "--out", "/"], "root"),
    ("fit-kae-over-damaged-registry", write_bytes("kae/slots.json", b"{oops"),
     ["fit", "{w}/items.parquet", "--out", "{w}/kae", "--method", "kae", "--attributes", "brand,color"], "repair or remove"),
    ("fit-rqk-over-kae", _noop, ["fit", "{w}/items.parquet", "--out", "{w}/kae", "--method", "rqkmeans", "-K", "8"], "slot binding(s)"),
    # other bad input
    ("encode-o-nodir", _noop, ["encode", "{w}/rqk", "{w}/items.parquet", "-o", "{w}/nodir/x.parquet"], "does not exist"),
    ("encode-string-ids-int-model", _model_setup, ["encode", "{w}/intm", "{w}/items.parquet", "-o", "{w}/x.parquet"], "integer ids"),
    ("fit-seed-negative", _noop, ["fit", "{w}/items.parquet", "--out", "{w}/m2", "--seed", "-1"], "--seed"),
    ("fit-seed-huge", _noop, ["fit", "{w}/items.parquet", "--out", "{w}/m2", "--seed", str(2**40)], "--seed"),
    ("fit-seed-config", _text("fit.toml", "seed = -1\n"), ["fit", "{w}/items.parquet", "--out", "{w}/m2", "--config", "{w}/fit.toml"], "--seed"),
    ("audit-seed-negative", _noop, ["audit", "{w}/codes.parquet", "--seed", "-1"], "--seed"),
    ("eval-seed-negative", _noop, ["eval", "{w}/codes.parquet", "--interactions", "{w}/inter.parquet", "--seed", "-1"], "--seed"),
    ("kae-plan-seed-negative", _noop, ["kae-plan", "{w}/items.parquet", "-o", "{w}/p.toml", "--seed", "-1"], "--seed"),
    ("unknown-option", _noop, ["fit", "{w}/items.parquet", "--bogus"], "no such option"),
    ("bad-int-option", _noop, ["encode", "{w}/rqk", "{w}/items.parquet", "-o", "{w}/x.parquet", "--batch-size", "zero"], "--batch-size"),
    ("missing-argument", _noop, ["encode", "{w}/rqk"], "missing argument"),
    ("index-json-code-1e30", _text("idx.json", '{"a": [1, 1e30], "b": [2, 3]}'), ["audit", "{w}/idx.json"], "too large"),
    ("index-json-token-huge", _text("idx.json", '{"a": "<a_1><b_99999999999999999999>", "b": "<a_2><b_3>"}'), ["audit", "{w}/idx.json"], "too large"),
    ("csv-code-huge", _text("c.csv", "item_id,sid_0,sid_1\na,1,99999999999\nb,2,3\n"), ["audit", "{w}/c.csv"], "too large"),
    ("bind-lock-dir-readonly", _noop, ["bind-slot", "color", "x y", "--model", "{w}/nowhere"], "not found"),
]


@pytest.mark.parametrize("name,setup,argv,fragment", MODEL_CASES + OTHER_CASES, ids=[c[0] for c in MODEL_CASES + OTHER_CASES])
def test_hostile_input_gives_one_line_and_changes_nothing(w, name, setup, argv, fragment):
    setup(w)
    before = snapshot(w)
    r = run(w, argv)
    assert_clean_error(r, fragment, before, snapshot(w))


def test_matrix_size():
    """The matrix the closing note reports: every class of the hardening issue is present."""
    names = [c[0] for c in MODEL_CASES + OTHER_CASES]
    assert len(names) == len(set(names)) and len(names) >= 150


# ------------------------------------------------------------------------------------------
# hostile text that is legitimate input: shown literally, never interpreted

HOSTILE_WORDS = ["[/x]", "[link=https://evil.example]click[/link]", "[bold red]loud", "\x1b[31mred\x1b[0m", "a\nb"]


@pytest.mark.parametrize("word", HOSTILE_WORDS, ids=["close-tag", "link", "style", "ansi", "newline"])
def test_hostile_words_are_shown_literally(w, word):
    r = run(w, ["bind-slot", "brand", word, "--model", "{w}/kae"])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout
    s = run(w, ["slots", "--model", "{w}/kae"])
    assert s.exit_code == 0, s.output
    assert "\x1b" not in s.stdout and "Traceback" not in s.output
    shown = word.split("\n")[0] if "\n" not in word else "a"
    if "[" in word:
        assert shown.replace("\x1b", "")[:5] in s.stdout.replace("\n", "")
    doc = json.loads(run(w, ["slots", "--model", "{w}/kae", "--json"]).stdout)
    from sidkit.kae.plan import normalize_word

    assert normalize_word(word) in [b["word"] for g in doc["groups"] for b in g["bindings"]]
    u = run(w, ["unbind-slot", "brand", word, "--model", "{w}/kae"])
    assert u.exit_code == 0, u.output


def test_markup_in_out_path_and_ids(w):
    r = run(w, ["fit", "{w}/items.parquet", "--out", "{w}/n[/x]", "--method", "rqkmeans", "-K", "8", "-L", "2"])
    assert r.exit_code == 0, r.output
    assert "n[/x]" in r.stdout
    # ids with markup and escape sequences in the audit's bucket table
    ids = ["[bold]x", "[link=https://e.example]y[/link]", "\x1b[2Jz", "w"]
    t = pa.table({"item_id": ids, "sid": pa.array([[1, 2], [1, 2], [1, 2], [3, 4]], pa.list_(pa.int32()))})
    pq.write_table(t, w / "hostile.parquet")
    a = run(w, ["audit", "{w}/hostile.parquet", "--codebook-size", "8", "--suffix", "none"])
    assert a.exit_code == 0, a.output
    assert "[bold]x" in a.stdout and "[link=https://e.example]y" in a.stdout and "\x1b" not in a.stdout


FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1,1)", "\tTAB", "\rCR", "'=quoted", "''", "plain", "'apostrophe"]


@pytest.mark.parametrize("fmt", ["tokens", "csv"])
def test_export_neutralises_formulas_and_reads_back(w, fmt):
    n = len(FORMULAS)
    t = pa.table({"item_id": FORMULAS, "sid": pa.array([[i, i % 3] for i in range(n)], pa.list_(pa.int32())),
                  "suffix": pa.array([0] * n, pa.int32())})
    pq.write_table(t, w / "f.parquet")
    r = run(w, ["export", "{w}/f.parquet", "--format", fmt, "-o", "{w}/f.csv"])
    assert r.exit_code == 0, r.output
    import csv

    rows = list(csv.reader(open(w / "f.csv", newline="", encoding="utf-8")))[1:]
    cells = [row[0] for row in rows]
    for c in cells:  # nothing a spreadsheet would evaluate
        assert not c.startswith(("=", "+", "-", "@", "\t", "\r")), c
    assert cells[FORMULAS.index("plain")] == "plain" and cells[FORMULAS.index("'apostrophe")] == "'apostrophe"
    from sidkit.io.sidtable import read_sid_table

    ids, codes, _, _, _ = read_sid_table(w / "f.csv")
    assert list(ids) == FORMULAS  # audit and eval see the original ids
    raw = run(w, ["export", "{w}/f.parquet", "--format", fmt, "-o", "{w}/raw.csv", "--raw"])
    assert raw.exit_code == 0
    assert [row[0] for row in list(csv.reader(open(w / "raw.csv", newline="", encoding="utf-8")))[1:]] == FORMULAS


# ------------------------------------------------------------------------------------------
# degenerate catalogs and numbers: a warning or a clean result, never silently wrong

def _catalog(w: Path, X: np.ndarray, name: str = "deg.parquet") -> Path:
    return write_items(w / name, [f"i{k}" for k in range(len(X))], X)


def test_huge_finite_embeddings_keep_their_directions(w):
    X = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32) * np.float32(1e30)
    p = _catalog(w, X)
    r = run(w, ["fit", str(p), "--out", "{w}/big", "--method", "rqkmeans", "-L", "2", "-K", "8", "--json"])
    assert r.exit_code == 0, r.output
    small = _catalog(w, X / np.float32(1e30), "small.parquet")
    r2 = run(w, ["fit", str(small), "--out", "{w}/small", "--method", "rqkmeans", "-L", "2", "-K", "8", "--json"])
    a, b = pq.read_table(w / "big" / "codes.parquet"), pq.read_table(w / "small" / "codes.parquet")
    assert a.column("sid").to_pylist() == b.column("sid").to_pylist()  # scale does not matter
    assert json.loads(r.stdout)["collision_rate"] == json.loads(r2.stdout)["collision_rate"] < 0.5


def test_float64_beyond_float32_is_refused(w):
    X = np.random.default_rng(1).normal(size=(32, 4))
    X[5, 1] = 1e300
    flat = pa.array(X.reshape(-1), pa.float64())
    pq.write_table(pa.table({"item_id": [f"i{k}" for k in range(32)], "embedding": pa.FixedSizeListArray.from_arrays(flat, 4)}), w / "f64.parquet")
    before = snapshot(w)
    r = run(w, ["fit", "{w}/f64.parquet", "--out", "{w}/m64", "--method", "rqkmeans", "-K", "4"])
    assert_clean_error(r, "float32 range (|x| > 3.4e38, first at row 5)", before, snapshot(w))


@pytest.mark.parametrize("kind", ["zero-rows", "identical"])
def test_degenerate_embeddings_are_warned(w, kind):
    X = np.random.default_rng(2).normal(size=(48, 6)).astype(np.float32)
    if kind == "zero-rows":
        X[:7] = 0
    else:
        X[:] = X[0]
    p = _catalog(w, X)
    r = run(w, ["fit", str(p), "--out", "{w}/dm", "--method", "rqkmeans", "-L", "2", "-K", "4"])
    assert r.exit_code == 0, r.output
    assert ("7 of 48 rows have an all-zero embedding" if kind == "zero-rows" else "all 48 rows have the same embedding") in r.stderr
    e = run(w, ["encode", "{w}/dm", str(p), "-o", "{w}/dc.parquet"])
    assert e.exit_code == 0
    if kind == "zero-rows":
        assert "7 of 48 rows have an all-zero embedding" in e.stderr


def test_tiny_catalogs_get_advice_that_works(w):
    X = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    one = _catalog(w, X[:1], "one.parquet")
    before = snapshot(w)
    r = run(w, ["fit", str(one), "--out", "{w}/t1"])
    assert_clean_error(r, "at least 2 items", before, snapshot(w))
    three = _catalog(w, X, "three.parquet")
    before = snapshot(w)
    r = run(w, ["fit", str(three), "--out", "{w}/t3", "--method", "rqkmeans"])
    assert_clean_error(r, "use --codebook-size 2 or fewer", before, snapshot(w))
    ok = run(w, ["fit", str(three), "--out", "{w}/t3", "--method", "rqkmeans", "--codebook-size", "2"])
    assert ok.exit_code == 0, ok.output


def _strict(text: str):
    def bad(c):
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=bad)


def test_model_without_codes_encodes_with_a_warning(w):
    (w / "rqk" / "codes.parquet").unlink()
    r = run(w, ["encode", "{w}/rqk", "{w}/items.parquet", "-o", "{w}/x.parquet"])
    assert r.exit_code == 0, r.output
    assert "no codes.parquet" in r.stderr


def test_kae_without_residual_prints_strict_json_and_na(w):
    r = run(w, ["fit", "{w}/items.parquet", "--out", "{w}/k2", "--method", "kae", "--attributes", "brand,color", "--json"])
    assert r.exit_code == 0, r.output
    doc = _strict(r.stdout)
    assert doc["reconstruction_mse"] is None
    _strict((w / "k2" / "report.json").read_text())
    r = run(w, ["fit", "{w}/items.parquet", "--out", "{w}/k2", "--method", "kae", "--attributes", "brand,color"])
    assert r.exit_code == 0 and "reconstruction MSE n/a" in " ".join(r.stdout.split())


def test_fit_out_dot_inside_the_model_directory(w, monkeypatch):
    monkeypatch.chdir(w / "rqk")
    r = runner.invoke(app, ["fit", str(w / "items.parquet"), "--out", ".", "--method", "rqkmeans", "-L", "3", "-K", "8", "-q"])
    assert r.exit_code == 0, r.output
    import os

    assert Path(os.getcwd()) == w / "rqk"  # the process is inside the new model, not a deleted folder
    assert json.loads((w / "rqk" / "sidkit.json").read_text())["n_levels"] == 3
    assert not [p for p in w.iterdir() if p.name.startswith(".rqk.")]
