"""Exports that LLM / T5 generative recommenders read unchanged (``sidkit export --format ...``).

* ``lcrec`` (LC-Rec, LETTER): ``DIR/NAME.index.json`` ``{"0": ["<a_12>", ...], ...}`` keyed by the
  contiguous item index 0..N-1 (the SID table's row order), ``NAME.id_map.parquet`` (``index``,
  ``item_id``), with ``--interactions`` ``NAME.inter.json`` ``{user_id: [item index, ...]}`` in
  time order (the stacks split it leave-one-out themselves: last item test, second-to-last
  valid), and with ``--items`` ``NAME.item.json`` ``{index: {"title", "description"}}``.
* ``minionerec``: exactly three tokens per item, collision-free (MiniOneRec keys items by the
  first three tokens): ``DIR/info/NAME.txt`` (``sid<TAB>title<TAB>index``),
  ``DIR/{train,valid,test}/NAME.csv`` (columns ``user_id, history_item_title, item_title,
  history_item_id, item_id, history_item_sid, item_sid``; list cells as Python literals, which
  MiniOneRec ``eval``-s; at most 10 history items; leave-one-out: each user's last interaction
  is the test row, the second-to-last the valid row, every earlier position a train row),
  ``DIR/index/NAME.index.json``, ``DIR/index/NAME.item.json`` and ``DIR/NAME.id_map.parquet``.
* ``openonerec``: ``DIR/pid2sid.parquet`` (``pid``, ``sid`` list<int64> of the core codes, read as
  ``dict(zip(df.pid, df.sid))`` by OpenOneRec's data scripts) and ``DIR/added_tokens.txt`` (the
  full grid in the ``<s_a_12>`` format plus ``<|sid_begin|>``, ``<|sid_end|>``, one per line, the
  order of OpenOneRec's ``expand_qwen3_vocab.py``).
* ``hf-tokenizer``: a local Hugging Face tokenizer (``--base``) with the grid added in grid order,
  saved to DIR with ``sid_token_init.safetensors`` (see :func:`hf_tokenizer_export`).

Every folder is built in a temp folder and swapped in whole (:func:`sidkit.io.artifacts.atomic_dir`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from sidkit.errors import ConfigError, DataError, InputFileError, SchemaError, opt
from sidkit.formats.tokens import BEGIN, DEFAULT_FORMAT, END, OPENONEREC_FORMAT, check_token_format, token, token_grid

STACK_FORMATS = ("lcrec", "minionerec", "openonerec", "hf-tokenizer")
MAX_HISTORY = 10  # MiniOneRec's sliding window (data/amazon18_data_process.py)


def _id_list(ids) -> list:
    a = np.asarray(ids)
    out = a.tolist()
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in out]


def check_name(name: str | None, default: str) -> str:
    """LC-Rec / LETTER / MiniOneRec take the dataset name from a file name up to the first dot."""
    name = default if name is None else name
    if not name or "." in name or "/" in name or "\\" in name or name.strip() != name:
        raise ConfigError(f"{opt('name', '--name')} {name!r}: the stacks read the dataset name up to the first dot, "
                          f"so give a name without dots, slashes or surrounding spaces (e.g. {name.replace('.', '_').replace('/', '_').strip() or 'items'!r})")
    return name


def suffix_grid_size(codebook_sizes, suffix, suffix_size: int | None) -> int:
    """Tokens of the suffix level in the grid: ``suffix_size``, by default the last codebook size;
    0 when the table has no suffix. Raises DataError when a suffix does not fit."""
    if suffix is None:
        return 0
    size = int(codebook_sizes[-1]) if suffix_size is None else int(suffix_size)
    mx = int(np.max(suffix)) if len(suffix) else 0
    if mx >= size:
        raise DataError(f"a suffix of {mx} does not fit a suffix level of {size} tokens; pass {opt('suffix_size', '--suffix-size')} "
                        f"{mx + 1} or more (keep it fixed across refreshes so the token ids stay put)")
    return size


def needs_sizes(sizes, path):
    if sizes is None:
        raise SchemaError(f"{path}: the SID table records no codebook sizes, which the full token grid needs; pass "
                          f"{opt('codebook_size', '--codebook-size')} (one size or one per level)")
    return sizes


def item_rows(codes: np.ndarray, suffix: np.ndarray | None, fmt: str, *, with_suffix: bool = True) -> list[list[str]]:
    """Per item, its tokens in ``fmt`` (the suffix token last when given and ``with_suffix``)."""
    n, L = codes.shape
    cols = [[token(fmt, l, c) for c in codes[:, l]] for l in range(L)]
    if suffix is not None and with_suffix:
        cols.append([token(fmt, L, s) for s in suffix])
    return [list(t) for t in zip(*cols)] if cols else [[] for _ in range(n)]


# --- catalog text and interactions --------------------------------------------------------------

def _clean(text) -> str:
    """Catalog text on one line (the MiniOneRec info file is tab separated)."""
    if text is None:
        return ""
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text if t is not None)
    return " ".join(str(text).split())


def read_item_text(items_path, ids, *, id_col: str | None, title_col: str, text_cols) -> tuple[list[str], list[str]]:
    """Titles and descriptions of the SID table's items (in its order) from a catalog."""
    from sidkit.io.source import open_source

    src = open_source(items_path, "catalog")
    names = src.names
    idc = id_col or ("item_id" if "item_id" in names else None)
    if idc is None or idc not in names:
        raise SchemaError(f"{items_path}: no id column {idc or 'item_id'!r} (columns: {', '.join(names[:12])}); pass {opt('id_col', '--id-col')}")
    if title_col not in names:
        raise SchemaError(f"{items_path}: no title column {title_col!r} (columns: {', '.join(names[:12])}); pass {opt('title_col', '--title-col')}")
    if text_cols is None:  # the default: the description column where the catalog has one
        text_cols = ["description"] if "description" in names else []
    text_cols = [c for c in text_cols if c]
    missing = [c for c in text_cols if c not in names]
    if missing:
        raise SchemaError(f"{items_path}: no text column {missing[0]!r} (columns: {', '.join(names[:12])}); pass {opt('text_cols', '--text-cols')}")
    t = src.read(list(dict.fromkeys([idc, title_col, *text_cols])))
    cat_ids = [str(v) for v in t.column(idc).to_pylist()]
    titles = t.column(title_col).to_pylist()
    texts = [t.column(c).to_pylist() for c in text_cols]
    pos = {v: i for i, v in enumerate(cat_ids)}
    out_t, out_d = [], []
    n_missing = 0
    for i in ids:
        j = pos.get(str(i))
        if j is None:
            n_missing += 1
            out_t.append("")
            out_d.append("")
            continue
        out_t.append(_clean(titles[j]))
        out_d.append(" ".join(s for s in (_clean(c[j]) for c in texts) if s))
    return out_t, out_d, n_missing


def user_sequences(inter_path, ids) -> tuple[list[str], list[list[int]], list[list[int]], int]:
    """Per user (ascending ids): the item indices in time order and their split parts
    (leave-one-out, :func:`sidkit.io.interactions.split_interactions`). Interactions with items
    that are not in the SID table are dropped (their count is returned)."""
    from sidkit.io.interactions import read_interactions, split_interactions

    inter = read_interactions(inter_path, for_split=False)
    pos = {str(v): i for i, v in enumerate(_id_list(ids))}
    iid = [str(v) for v in inter["item_id"].to_pylist()]
    idx = np.fromiter((pos.get(v, -1) for v in iid), dtype=np.int64, count=len(iid))
    keep = idx >= 0
    dropped = int((~keep).sum())
    if not keep.any():
        raise DataError(f"{inter_path}: none of the interactions' item ids are in the SID table; give the interactions of these items")
    users = inter["user_id"][keep]
    order = inter["order"][keep] if inter["order"] is not None else None
    idx = idx[keep]
    perm, uinv, part = split_interactions(users, order=order)
    uvals = np.asarray(users)[perm]
    seq_items = idx[perm]
    starts = np.flatnonzero(np.concatenate(([True], uinv[1:] != uinv[:-1])))
    ends = np.append(starts[1:], len(uinv))
    names, seqs, parts = [], [], []
    for a, b in zip(starts, ends):
        names.append(str(uvals[a].item() if isinstance(uvals[a], np.generic) else uvals[a]))
        seqs.append(seq_items[a:b].tolist())
        parts.append(part[a:b].tolist())
    return names, seqs, parts, dropped


# --- the exports ---------------------------------------------------------------------------------

def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _id_map_table(ids):
    import pyarrow as pa

    return pa.table({"index": pa.array(np.arange(len(ids), dtype=np.int64)), "item_id": pa.array(_id_list(ids))})


def _write_pq(table, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path)


def stack_export(codes_path, fmt: str, out, *, name: str | None = None, interactions=None, items=None,
                 id_col: str | None = None, suffix: str = "auto", codebook_size=None, title_col: str = "title",
                 text_cols=None, token_format: str | None = None, tokens_file=None,
                 suffix_size: int | None = None, base=None) -> dict:
    """Write one of :data:`STACK_FORMATS` to the folder ``out`` (replaced as a whole). Returns a
    summary dict (format, path, files, n_items, n_levels, n_users, n_grid_tokens, warnings)."""
    from sidkit.io.artifacts import atomic_dir
    from sidkit.io.codes import unused_suffix
    from sidkit.io.sidtable import read_sid_table

    tf, name = _check_stack_args(codes_path, fmt, out, name=name, interactions=interactions, items=items,
                                 token_format=token_format, base=base)
    ids, codes, sfx, sizes, warnings = read_sid_table(codes_path, id_col=id_col, suffix=suffix, codebook_size=codebook_size)
    sfx = unused_suffix(codes_path, sfx, suffix)
    warnings = list(warnings)
    n, L = codes.shape
    info = {"format": fmt, "path": str(out), "name": name, "n_items": int(n), "n_levels": int(L), "token_format": tf,
            "files": [], "warnings": warnings}

    if fmt == "minionerec":
        rows = _minionerec_tokens(codes, sfx, tf, codes_path)
    elif fmt == "openonerec":
        rows = item_rows(codes, None, tf)
    else:
        rows = item_rows(codes, sfx, tf)
    grid = None
    if fmt in ("openonerec", "hf-tokenizer") or tokens_file is not None:
        grid = _stack_grid(fmt, needs_sizes(sizes, codes_path), sfx, suffix_size, tf, info)
    side = _side_inputs(ids, n, items=items, interactions=interactions, title_col=title_col, text_cols=text_cols,
                        info=info, warnings=warnings)
    if fmt == "openonerec" and L != 3:
        warnings.append(f"OpenOneRec's data scripts format 3 codes per item (<s_a_..><s_b_..><s_c_..>); this table has {L} levels")
    if fmt == "openonerec" and sfx is not None and not _suffix_unused(sfx):
        warnings.append(f"{int(np.count_nonzero(sfx))} items share their core SID with an earlier item; pid2sid.parquet holds the "
                        f"core codes, so a generated SID maps to several pids (sidkit lookup lists them all)")

    with atomic_dir(out) as tmp:
        folder = _Folder(tmp)
        if fmt == "lcrec":
            _write_lcrec(folder, name, rows, ids, side)
        elif fmt == "minionerec":
            _write_minionerec(folder, name, rows, ids, side)
        elif fmt == "openonerec":
            _write_openonerec(folder, name, ids, codes, grid)
        else:
            info.update(hf_tokenizer_export(base, grid, tmp))
            folder.files.extend(info.pop("hf_files"))
        if tokens_file is not None:
            write_tokens_file(tokens_file, grid, out, tmp)
            info["tokens_file"] = str(tokens_file)
        info["files"] = folder.files
    return info


def _check_stack_args(codes_path, fmt, out, *, name, interactions, items, token_format, base) -> tuple[str, str]:
    """Check the format, output folder, token format and base; return (token format, file name stem)."""
    from sidkit.io.artifacts import check_output

    if fmt not in STACK_FORMATS:
        raise ConfigError(f"{opt('fmt', '--format')} {fmt!r}: use one of {', '.join(STACK_FORMATS)}")
    if out is None:
        raise ConfigError(f"{opt('fmt', '--format')} {fmt} writes a folder: give it with {opt('out', '-o')}")
    if fmt == "openonerec" and token_format is None:
        token_format = OPENONEREC_FORMAT
    tf = check_token_format(token_format)
    name = check_name(name, "pid2sid" if fmt == "openonerec" else "items")
    check_output(out, opt("out", "-o"), {"CODES": codes_path, opt("interactions", "--interactions"): interactions,
                                         opt("items", "--items"): items, opt("base", "--base"): base}, directory=True)
    if fmt == "hf-tokenizer":
        if base is None:
            raise ConfigError(f"--format hf-tokenizer needs {opt('base', '--base')} DIR: a local Hugging Face tokenizer or model directory")
        _need_transformers()
    return tf, name


def _stack_grid(fmt: str, sizes, sfx, suffix_size, tf: str, info: dict) -> list[str]:
    """The token grid of the export (suffix tokens only where a suffix token is written)."""
    if fmt == "openonerec" or (fmt == "minionerec" and _suffix_unused(sfx)):
        ssz = 0  # no suffix token is written
    else:
        ssz = suffix_grid_size(sizes, sfx, suffix_size)
    grid = token_grid(sizes, suffix_size=ssz, fmt=tf, markers=fmt == "openonerec")
    info["n_grid_tokens"] = len(grid)
    info["suffix_grid_size"] = ssz
    return grid


def _side_inputs(ids, n: int, *, items, interactions, title_col, text_cols, info: dict, warnings: list) -> dict:
    """Titles and descriptions from ``items`` and user sequences from ``interactions`` (None when not given)."""
    side = {"titles": None, "descs": None, "users": None, "seqs": None, "parts": None}
    if items is not None:
        titles, descs, n_missing = read_item_text(items, ids, id_col=None, title_col=title_col,
                                                  text_cols=None if text_cols is None else list(text_cols))
        side.update(titles=titles, descs=descs)
        if n_missing:
            warnings.append(f"{items}: {n_missing} of {n} items of the SID table are not in the catalog; their title and description are empty")
    if interactions is not None:
        users, seqs, parts, dropped = user_sequences(interactions, ids)
        side.update(users=users, seqs=seqs, parts=parts)
        info["n_users"] = len(users)
        if dropped:
            warnings.append(f"{interactions}: {dropped} interactions name items that are not in the SID table; they are left out")
    return side


class _Folder:
    """The temp copy of the export folder: ``put`` writes a text or Parquet file and lists it."""

    def __init__(self, root: Path):
        self.root, self.files = root, []

    def put(self, rel: str, text: str | None = None, table=None) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if table is not None:
            _write_pq(table, p)
        else:
            p.write_text(text, encoding="utf-8")
        self.files.append(rel)


def _write_lcrec(folder: _Folder, name: str, rows, ids, side: dict) -> None:
    put = folder.put
    put(f"{name}.index.json", _dumps({str(i): r for i, r in enumerate(rows)}))
    put(f"{name}.id_map.parquet", table=_id_map_table(ids))
    if side["seqs"] is not None:
        put(f"{name}.inter.json", _dumps({u: s for u, s in zip(side["users"], side["seqs"])}))
    if side["titles"] is not None:
        put(f"{name}.item.json", _dumps({str(i): {"title": t, "description": d}
                                         for i, (t, d) in enumerate(zip(side["titles"], side["descs"]))}))


def _write_minionerec(folder: _Folder, name: str, rows, ids, side: dict) -> None:
    put, n, descs = folder.put, len(rows), side["descs"]
    sids = ["".join(r) for r in rows]
    tt = side["titles"] if side["titles"] is not None else [f"Item_{i}" for i in range(n)]
    tt = [t if t else f"Item_{i}" for i, t in enumerate(tt)]
    put(f"info/{name}.txt", "".join(f"{s}\t{t}\t{i}\n" for i, (s, t) in enumerate(zip(sids, tt))))
    put(f"index/{name}.index.json", _dumps({str(i): r for i, r in enumerate(rows)}))
    put(f"index/{name}.item.json", _dumps({str(i): {"title": t, "description": "" if descs is None else descs[i]}
                                           for i, t in enumerate(tt)}))
    put(f"{name}.id_map.parquet", table=_id_map_table(ids))
    if side["seqs"] is not None:
        for split, text in _minionerec_csvs(side["users"], side["seqs"], side["parts"], sids, tt).items():
            put(f"{split}/{name}.csv", text)


def _write_openonerec(folder: _Folder, name: str, ids, codes, grid) -> None:
    import pyarrow as pa

    folder.put(f"{name}.parquet", table=pa.table({"pid": pa.array(_id_list(ids)),
                                                  "sid": pa.array(codes.astype(np.int64).tolist(), pa.list_(pa.int64()))}))
    folder.put("added_tokens.txt", "".join(t + "\n" for t in grid))


def write_tokens_file(path, grid: list[str], out_dir=None, tmp_dir=None) -> None:
    """One token a line (the layout OpenOneRec's ``--tokens_file`` and ``tokenizer.add_tokens``
    loops read). A path inside the output folder is written into its temp copy."""
    from sidkit.io.artifacts import resolve_out_dir, write_text_atomic

    text = "".join(t + "\n" for t in grid)
    p = Path(path)
    if out_dir is not None and tmp_dir is not None:
        o = resolve_out_dir(out_dir)
        a = Path(p).absolute()
        if o in a.parents:
            dst = Path(tmp_dir) / a.relative_to(o)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text, encoding="utf-8")
            return
    write_text_atomic(p, text)


def _suffix_unused(sfx) -> bool:
    return sfx is None or not np.any(sfx)


def _minionerec_tokens(codes, sfx, fmt, path) -> list[list[str]]:
    """Three collision-free tokens per item: the core tokens, plus the suffix token when a suffix
    is in use; anything else is an error naming the fix."""
    from sidkit.io.codes import pack_keys

    n, L = codes.shape
    use_sfx = L == 2 and not _suffix_unused(sfx)  # 2 levels + the suffix: 3 collision-free tokens
    fix = ("refit with --levels 3 --dedup zcr (distinct 3-token SIDs), or with --levels 2 (the suffix becomes the third token), "
           "or with 3 levels and larger codebooks until the 3 tokens are unique")
    if L + use_sfx != 3:
        raise DataError(f"{path}: MiniOneRec keys items by exactly 3 tokens but this table has {L} levels; {fix}")
    full = np.column_stack([codes, sfx]) if use_sfx else codes
    n_u = np.unique(pack_keys(full)).size
    if n_u != n:
        raise DataError(f"{path}: {n - n_u} of {n} items share their 3 tokens with another item, so MiniOneRec cannot tell them apart; {fix}")
    return item_rows(codes, sfx if use_sfx else None, fmt)


def _minionerec_csvs(users, seqs, parts, sids, titles) -> dict[str, str]:
    from sidkit.io.interactions import TEST, TRAIN, VALID

    names = {TRAIN: "train", VALID: "valid", TEST: "test"}
    bufs = {k: io.StringIO() for k in names}
    writers = {}
    header = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id", "history_item_sid", "item_sid"]
    for k, b in bufs.items():
        writers[k] = csv.writer(b, lineterminator="\n")
        writers[k].writerow(header)
    for u, seq, part in zip(users, seqs, parts):
        for i in range(1, len(seq)):
            hist = seq[max(0, i - MAX_HISTORY):i]
            tgt = seq[i]
            writers[part[i]].writerow([u, repr([titles[h] for h in hist]), titles[tgt], repr(hist), tgt,
                                       repr([sids[h] for h in hist]), sids[tgt]])
    return {names[k]: b.getvalue() for k, b in bufs.items()}


# --- Hugging Face tokenizer -----------------------------------------------------------------------

_EMBED_KEYS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "shared.weight", "embeddings.weight")


def _base_embeddings(base: Path):
    """The base model's input embedding matrix from its safetensors files, or None."""
    from safetensors import safe_open

    files = sorted(base.glob("*.safetensors"))
    for f in files:
        with safe_open(str(f), framework="numpy") as st:
            for k in st.keys():  # noqa: SIM118  (safe_open is not a dict)
                if k.endswith(_EMBED_KEYS):
                    return st.get_tensor(k), k
    return None, None


def _need_transformers():
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError("--format hf-tokenizer needs transformers: pip install 'sidkit[llm]' (or pip install transformers)") from None
    return AutoTokenizer


def hf_tokenizer_export(base, grid: list[str], out_dir: Path) -> dict:
    """Add ``grid`` (in order) to the local tokenizer ``base`` and save it to ``out_dir`` with
    ``sid_token_init.safetensors``: key ``sid_token_init`` of shape (number of added tokens, d),
    every row the mean of the base model's input embeddings (so a new token starts at the centre
    of the embedding cloud: no token stands out before fine-tuning, the initialisation
    ``resize_token_embeddings`` also uses), and ``token_ids`` (int64, the id of each row's
    token). ``sid_tokens.json`` lists the tokens with their ids. ``base`` must hold the model's
    safetensors (the embedding matrix) beside the tokenizer files; nothing is downloaded."""
    AutoTokenizer = _need_transformers()
    from safetensors.numpy import save_file

    base = Path(base)
    if not base.is_dir():
        raise InputFileError(f"{base}: {opt('base', '--base')} must be a local tokenizer or model directory (nothing is downloaded)")
    emb, key = _base_embeddings(base)
    if emb is None:
        raise InputFileError(f"{base}: no input embedding matrix (*.safetensors with {_EMBED_KEYS[0]} or similar) to initialise "
                             f"the new rows from; give the model directory as {opt('base', '--base')}")
    try:
        tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    except (OSError, ValueError) as e:
        raise InputFileError(f"{base}: cannot load a tokenizer ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                             f"give a directory saved with save_pretrained") from None
    vocab = tok.get_vocab()
    clash = [t for t in grid if t in vocab]
    if clash:
        raise DataError(f"{base}: the tokenizer already has the SID token {clash[0]!r} ({len(clash)} in all); give the base tokenizer "
                        f"without SID tokens or pick another {opt('token_format', '--token-format')}")
    n0 = len(tok)
    added = tok.add_tokens(list(grid), special_tokens=False)
    if added != len(grid):
        raise DataError(f"{base}: the tokenizer added {added} of {len(grid)} SID tokens; give a tokenizer without them")
    ids = np.asarray(tok.convert_tokens_to_ids(list(grid)), dtype=np.int64)
    tok.save_pretrained(str(out_dir))
    mean = np.asarray(emb, dtype=np.float32).mean(axis=0)
    rows = np.repeat(mean[None, :], len(grid), axis=0)
    save_file({"sid_token_init": np.ascontiguousarray(rows), "token_ids": ids}, str(out_dir / "sid_token_init.safetensors"),
              metadata={"init": "mean of the base input embeddings", "source_key": key, "first_id": str(n0)})
    (out_dir / "sid_tokens.json").write_text(json.dumps({t: int(i) for t, i in zip(grid, ids)}, ensure_ascii=False) + "\n", encoding="utf-8")
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    return {"hf_files": files, "n_added_tokens": int(added), "first_new_id": int(n0), "embedding_dim": int(rows.shape[1])}


__all__ = ["BEGIN", "DEFAULT_FORMAT", "END", "OPENONEREC_FORMAT", "STACK_FORMATS", "check_name", "hf_tokenizer_export", "stack_export"]
