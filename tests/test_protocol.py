"""The tokenizer protocol, the method registry, the option table and the package's layering."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sidkit
from sidkit.errors import DataError, NotFittedError, SidkitError
from sidkit.quantizers.base import Items, Tokenizer

from conftest import planted, write_items

REPO = Path(__file__).resolve().parents[1]


def _kae():
    from sidkit.datasets import make_catalog
    from sidkit.kae.model import KAE
    from sidkit.kae.plan import make_plan

    t = make_catalog(300, 8, seed=2)
    plan, _ = make_plan(t, ["brand", "color"], groups=2)
    X = np.asarray(t.column("embedding").to_pylist(), np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cols = {c: t.column(c) for c in ("brand", "color", "title")}
    return KAE(plan, random_state=0), Items(X, cols)


def _tokenizers():
    from sidkit.quantizers.rqkmeans import RQKMeans
    from sidkit.quantizers.rqvae import RQVAE

    X, _, _ = planted(n_clusters=6, n_sub=3, per=12, dim=8, seed=1)
    yield "rqkmeans", RQKMeans(2, 8, random_state=0), Items(X)
    yield "rqvae", RQVAE(2, 8, latent_dim=4, hidden=(16,), max_steps=40, eval_every=20, random_state=0), Items(X)
    yield "kae", *_kae()


@pytest.mark.parametrize("name", ["rqkmeans", "rqvae", "kae"])
def test_every_tokenizer_implements_the_protocol(name):
    from sidkit import methods

    _, tok, items = next(t for t in _tokenizers() if t[0] == name)
    assert isinstance(tok, Tokenizer) and tok.class_name == methods.METHODS[name].class_name
    with pytest.raises(NotFittedError, match="not fitted"):
        tok.encode(items)
    calls = []
    tok.fit(items, progress=lambda stage, done, total, info: calls.append((stage, done, total, dict(info))))
    assert calls and all(isinstance(c[3], dict) and 0 <= c[1] <= c[2] for c in calls)  # one signature everywhere
    codes = tok.encode(items)
    sizes = tok.codebook_sizes
    assert codes.shape == (len(items), len(sizes)) and codes.dtype == np.int32
    assert ((codes >= 0) & (codes < np.asarray(sizes))).all()
    # from_state through the registry gives the same tokenizer
    back = methods.load_tokenizer(tok.class_name, json.loads(json.dumps(tok.params())), tok.state_dict())
    back.bindings_ = getattr(tok, "bindings_", None) or []
    assert (back.encode(items) == codes).all() and back.codebook_sizes == sizes
    table = tok.codebooks_table(codes)
    assert table.num_rows == sum(sizes) and int(np.asarray(table.column("count")).sum()) == len(sizes) * len(items)
    rec = tok.decode(codes)
    mse = tok.reconstruction_mse(items, codes)
    if name == "kae":  # attribute positions only: no reconstruction
        assert rec is None and mse is None
    else:
        assert rec.shape == items.X.shape and mse == pytest.approx(float(((rec - items.X) ** 2).mean()), rel=1e-4)
    assert isinstance(tok.training_summary(), dict) and isinstance(tok.extra_files("fp"), dict)


@pytest.mark.parametrize("name", ["rqkmeans", "rqvae", "kae"])
def test_tokenizers_validate_their_input_in_python_terms(name):
    _, tok, items = next(t for t in _tokenizers() if t[0] == name)
    X = items.X
    with pytest.raises(DataError, match="2-D"):
        tok.fit(X[0])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN or inf values \\(first in row 3\\)"):
        tok.fit(Items(bad, items.columns))
    tok.fit(items)
    with pytest.raises(DataError, match=f"has 3 columns but the tokenizer was fitted on {X.shape[1]}"):
        tok.encode(X[:, :3])
    with pytest.raises(DataError, match="codes"):
        tok.decode(np.full((2, len(tok.codebook_sizes)), 10**6))


def test_too_few_items_is_one_message_with_one_fix():
    from sidkit.quantizers.rqkmeans import RQKMeans
    from sidkit.quantizers.rqvae import RQVAE

    X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    for tok in (RQKMeans(2, 64), RQVAE(2, 64)):
        with pytest.raises(DataError, match=r"there are 10 items to fit, fewer than the 64 codes per level; use codebook_size 2 or fewer"):
            tok.fit(X)
    with pytest.raises(DataError, match="at least 2 items"):
        RQKMeans(2, 2).fit(X[:1])


def test_python_api_takes_the_cli_option_names(tmp_path):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=8)
    items = write_items(tmp_path / "i.parquet", [f"i{k}" for k in range(len(X))], X)
    r = sidkit.fit(items, out=tmp_path / "m", method="quasid", levels=2, codebook_size=4, max_steps=20, eval_every=10,
                   lambda_hmr=0.5, no_mask=True, refresh_every=10)
    cfg = json.loads((tmp_path / "m" / "sidkit.json").read_text())["config"]
    assert cfg["quasid"]["lambda_hmr"] == 0.5 and cfg["quasid"]["mask"] is False and cfg["mining"]["refresh_every"] == 10
    assert r.summary["regularizer"] == "quasid"
    with pytest.raises(SidkitError, match="lambda_hmr"):  # the block's bound, named as the caller wrote it
        sidkit.fit(items, out=tmp_path / "m2", method="quasid", lambda_hmr=-1)
    with pytest.raises(SidkitError, match="codebook_size lists 3 sizes for levels 2"):
        sidkit.fit(items, out=tmp_path / "m2", levels=2, codebook_size=[4, 4, 4])


def test_help_texts_take_their_defaults_from_the_config():
    from sidkit.config import BLOCK_DEFAULTS, FitConfig, help_for

    assert help_for("levels").endswith(f"[default: {FitConfig().levels}]")
    assert help_for("lambda_hmr").endswith(f"[default: {BLOCK_DEFAULTS['quasid']['lambda_hmr']}]")
    assert "50 steps" in help_for("refresh_every")


def test_fit_config_sections_keep_the_flat_options_and_the_stored_layout():
    import dataclasses

    from sidkit.config import FLAT_SECTIONS, STORED_ORDER, FitConfig, resolve

    cfg = resolve({"method": "kae", "epochs": 7, "residual_levels": 1, "lambda_hmr": 0.5, "mining": {"h_max": 0}})
    assert (cfg.rqvae.epochs, cfg.kae.residual_levels, cfg.quasid.lambda_hmr, cfg.mining.h_max) == (7, 1, 0.5, 0)
    top = [f.name for f in dataclasses.fields(FitConfig) if f.name not in FLAT_SECTIONS]
    flat = [f.name for t in FLAT_SECTIONS.values() for f in dataclasses.fields(t)]
    assert sorted(STORED_ORDER) == sorted(top + flat) and len(set(STORED_ORDER)) == len(STORED_ORDER)
    d = cfg.to_dict()
    assert list(d) == list(STORED_ORDER) and d["epochs"] == 7 and d["quasid"]["lambda_hmr"] == 0.5


# ------------------------------------------------------------------------------------------
# layering: no import cycles, no module imports a higher stage

STAGES = [  # (module prefix, stage): lower stages never import higher ones, even lazily; the longest prefix decides
    ("sidkit.errors", 0), ("sidkit.config", 0), ("sidkit._progress", 0),
    ("sidkit.io", 1), ("sidkit.features", 1), ("sidkit.metrics", 1), ("sidkit.report", 1), ("sidkit.datasets", 1),
    ("sidkit.formats.tokens", 1), ("sidkit.dedup.zcr", 1), ("sidkit.dedup.suffix", 1),
    ("sidkit.model.layout", 1), ("sidkit.model.lock", 1), ("sidkit.model.files", 1),
    ("sidkit.quantizers", 2), ("sidkit.regularizers", 2), ("sidkit.kae", 2),
    ("sidkit.methods", 3),
    ("sidkit.model", 4), ("sidkit.encoding.kernel", 4),
    ("sidkit.pipeline", 5), ("sidkit.encoding", 5), ("sidkit.report.audit", 5), ("sidkit.formats", 5),
    ("sidkit.eval", 5), ("sidkit.dedup", 5),
    ("sidkit.cli", 6), ("sidkit.__main__", 6),
]


def _stage(mod: str) -> int:
    hits = [(len(p), s) for p, s in STAGES if mod == p or mod.startswith(p + ".")]
    return max(hits)[1] if hits else -1


def _graph() -> dict[str, set[str]]:
    root = REPO / "sidkit"
    mods = {}
    for p in root.rglob("*.py"):
        parts = p.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    out: dict[str, set[str]] = {}
    for name, p in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                cands = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in cands if c in mods and c != name and c != "sidkit"}
        out[name] = deps
    return out


def test_no_import_cycles_and_no_upward_imports():
    g = _graph()
    assert all(_stage(m) >= 0 for m in g if m != "sidkit"), [m for m in g if _stage(m) < 0 and m != "sidkit"]
    up = [(m, d) for m, ds in g.items() for d in ds if m != "sidkit" and _stage(d) > _stage(m)]
    assert not up, up
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in g.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]) if d in path else d)
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])


def test_import_and_version_load_no_heavy_stack():
    code = ("import sys, sidkit, sidkit.cli; "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'faiss', 'polars') "
            "or (m.startswith(('sidkit.kae', 'sidkit.quantizers', 'sidkit.regularizers', 'sidkit.pipeline')) "
            "and m not in ('sidkit.kae', 'sidkit.kae.defaults'))]; "
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    v = subprocess.run([sys.executable, "-m", "sidkit", "--version"], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0 and v.stdout.startswith("sidkit ")


def test_model_directory_has_one_owner():
    """sidkit.model owns the model directory: sidkit.model.directory is the only writer of a whole
    one (atomic_dir; the other atomic_dir users write encode's folder of codes shards and export's
    stack folders) and loader of its tokenizer; sidkit.model.layout names every file and holds the
    one reader (ModelDir), through which KAE's slot commands read too; sidkit.model.lock the lock."""
    import re

    src = {p.relative_to(REPO).as_posix(): p.read_text() for p in (REPO / "sidkit").rglob("*.py")}
    users = sorted(p for p, t in src.items() if "atomic_dir(" in t and not p.endswith("io/artifacts.py"))
    assert users == ["sidkit/encoding/finish.py", "sidkit/formats/stacks.py", "sidkit/model/directory.py"], users
    names = ("sidkit.json", "model.safetensors", "codes.parquet", "codebooks.parquet", "report.json", "slots.json", "kae.toml")
    for name in names:
        defs = [p for p, t in src.items() if re.search(rf'^\s*\w+\s*=\s*"{re.escape(name)}"', t, re.M)]
        assert defs == ["sidkit/model/layout.py"], (name, defs)
    for what, home in (("class ModelDir", "sidkit/model/layout.py"), ("def recover_dir", "sidkit/model/layout.py"),
                       ("def model_lock", "sidkit/model/lock.py"), ("def check_meta", "sidkit/model/files.py"),
                       ("def load_model", "sidkit/model/directory.py"), ("def write_model_dir", "sidkit/model/directory.py")):
        assert [p for p, t in src.items() if what + "(" in t or what + ":" in t] == [home], what
    kae = "".join(t for p, t in src.items() if p.startswith("sidkit/kae/"))
    assert "write_json_atomic" not in kae and ".read_bytes()" not in kae  # slots.json: the model layer's reader and writer


def test_public_api_is_reachable_and_not_shadowed_by_submodules():
    """Every name in ``sidkit.__all__`` resolves after ``import sidkit`` (subpackages included), and
    importing the modules behind the public functions never replaces those functions."""
    code = ("import importlib, inspect, types, sidkit\n"
            "missing = [n for n in sidkit.__all__ if getattr(sidkit, n, None) is None]\n"
            "for m in ('sidkit.pipeline', 'sidkit.report.audit', 'sidkit.formats.export', 'sidkit.formats.lookup',\n"
            "          'sidkit.eval.run', 'sidkit.model.directory', 'sidkit.encoding.job', 'sidkit.cli'):\n"
            "    importlib.import_module(m)\n"
            "jobs = ['fit', 'encode', 'audit', 'export', 'lookup', 'evaluate', 'load_model']\n"
            "not_fn = [n for n in jobs if not inspect.isfunction(getattr(sidkit, n))]\n"
            "subs = [n for n in ('eval', 'metrics', 'kae', 'encoding', 'formats', 'model', 'dedup', 'report')\n"
            "        if not isinstance(getattr(sidkit, n), types.ModuleType)]\n"
            "undocumented = [n for n in jobs if f'sidkit.{n}(' not in sidkit.__doc__]\n"
            "print(missing, not_fn, subs, undocumented)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[] [] [] []", r.stdout


def test_tokenizers_return_data_and_report_makes_the_summary_text():
    """No tokenizer hook returns summary entries or message text; report.fit makes them from the
    method's report.json block (hand-made KAE block with a kept, a noted and a dropped binding)."""
    from sidkit.kae.model import KAE
    from sidkit.quantizers.base import Tokenizer
    from sidkit.quantizers.rqkmeans import RQKMeans
    from sidkit.quantizers.rqvae import RQVAE
    from sidkit.report.fit import method_messages, method_summary

    for cls in (Tokenizer, RQKMeans, RQVAE, KAE):
        assert not hasattr(cls, "fit_messages") and not hasattr(cls, "summary_blocks"), cls
    assert method_summary({"collision": {}}) == {} and method_messages({}) == ([], [])
    carried = {"kept": [{"category": "color", "word": "sage", "slot": 3},
                        {"category": "color", "word": "teal", "slot": 4, "note": "its items moved"}],
               "dropped": [{"category": "brand", "word": "acme", "reason": "no free slot"}], "active": []}
    group = {"name": "color", "position": 0, "categories": ["color"], "kept_words": 5, "reserved": 2, "capacity": 9,
             "null_rate": 0.1, "other_rate": 0.0, "routed_rate": 0.0, "routing": {}}
    report = {"kae": {"groups": [group], "residual_levels": 1, "residual_method": "rqkmeans", "carried_bindings": carried}}
    assert method_summary(report) == {"kae": {
        "groups": [{"name": "color", "categories": ["color"], "kept_words": 5, "reserved": 2, "capacity": 9}],
        "residual_levels": 1, "bindings_kept": 2, "bindings_dropped": carried["dropped"], "bindings_now_active": 0}}
    assert method_messages(report) == (
        ["refit: kept 2 slot binding(s) of the previous model"],
        ["refit: binding brand:acme could not be kept: no free slot",
         "refit: binding color:teal kept at slot 4, but its items moved"])
