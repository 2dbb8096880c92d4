"""The map stage of ``sidkit encode --engine ray``: core SIDs of every input shard, on Ray Data.

An encode has two stages (DESIGN.md §6): a *map* stage that turns every catalog row into its core
SID, which is embarrassingly parallel, and a *finish* stage (the global suffix pass and the final
atomic write, :func:`sidkit.encoding.finish.finish_encode`), which needs every row of a core SID bucket.
This module runs the map stage on a Ray cluster and writes the same *staged* files as the local
engine's map stage:

- one Parquet file per input shard, ``stage_dir/part-{i:05d}.parquet``, ``i`` being the shard's
  index in :attr:`ParquetSource.shards <sidkit.io.source.ParquetSource.shards>` (sorted paths);
- each holds the shard's rows in the shard's row order, columns ``item_id`` (the input id column's
  values and type) and ``sid`` (``list<int32>``) (+ ``zcr_cand`` for a ZCR model): what
  :func:`sidkit.encoding.kernel.encode_batch` (the batch kernel's Arrow entry) returns.

Design. The Ray Dataset is the list of shard paths (``from_items``), not the rows: one
``map_batches`` call per shard, on a pool of actors that each load the model once, from its
directory (safetensors + JSON, no pickles; the model object never travels through Ray's object
store). An actor streams its shard with pyarrow in record batches, encodes them and writes the
staged file atomically (temp name, then ``os.replace``), so a retried task rewrites the same file
and a killed one leaves only a hidden temp. Row order inside a shard is therefore exact whatever
Ray's scheduling, and the driver checks that every shard came back once with its row count.

The unit of parallelism is the input shard: give the cluster more shards than workers (a 10^9-row
catalog in 1,000 shards of 1M rows keeps 100 workers busy). The model directory, the catalog and
the stage directory must be on storage that every node sees under the same path (a shared file
system or a mount of the same bucket); on one machine any local path works.

``ray`` is imported only inside :func:`ray_map_stage`: ``import sidkit`` never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from sidkit.errors import ConfigError, InputFileError, ModelError, SidkitError, opt
from sidkit.encoding.kernel import encode_batch, model_dedup, staged_name

__all__ = ["RAY_MISSING", "encode_shard", "ray_map_stage", "staged_name"]

RAY_MISSING = "--engine ray needs Ray: pip install 'sidkit[ray]'"


def _read_columns(model, names: Sequence[str], id_col: str) -> list[str]:
    cols = [id_col, *model.fusion.columns]
    cols += [c for c in model.tokenizer.attribute_columns if c in names and c not in cols]
    return cols


def _shard_batches(pf: pq.ParquetFile, shard: Path, cols: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """The shard's record batches; a read error becomes one InputFileError naming the shard."""
    it = pf.iter_batches(batch_size=batch_size, columns=cols)
    n = 0
    while True:
        try:
            b = next(it)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputFileError(f"{shard}: could not read the data near row {n} ({msg}); the file may be "
                                 f"truncated, re-export it") from None
        n += b.num_rows
        yield b


def encode_shard(model, shard: str | os.PathLike, dest: str | os.PathLike, *, id_col: str,
                 batch_size: int = 65536) -> int:
    """Encode one Parquet shard into the staged file ``dest`` (atomically); return its row count.

    The shard is streamed in record batches of ``batch_size`` rows through
    :func:`sidkit.encoding.kernel.encode_batch`; ``dest`` gets columns ``item_id`` and ``sid`` in the
    shard's row order. A failure leaves no ``dest`` (and no temp file). Errors reading the shard
    are :class:`InputFileError` naming it; errors writing ``dest`` are left as ``OSError``.
    """
    shard, dest = Path(shard), Path(dest)
    if not shard.is_file():
        raise InputFileError(f"{shard}: not found on node {socket.gethostname()}; on a cluster the catalog must be "
                             f"on storage every node sees under the same path")
    try:
        pf = pq.ParquetFile(shard, pre_buffer=False, buffer_size=1 << 20)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputFileError(f"{shard}: not a readable Parquet file ({msg}); re-export it") from None
    cols = _read_columns(model, names, id_col)
    zcr = model_dedup(model) == "zcr"
    missing = [c for c in cols if c not in names]
    if missing:
        raise InputFileError(f"{shard}: no column '{missing[0]}' (columns: {', '.join(names[:12])}); "
                             f"the model reads {', '.join(cols)}")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    n = 0
    writer = None
    try:
        with pf:
            for b in _shard_batches(pf, shard, cols, batch_size):
                t = encode_batch(model, b, id_col=id_col, source=f"{shard} (rows from {n})", candidates=zcr)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, t.schema)
                writer.write_table(t)
                n += t.num_rows
        if writer is None:  # an empty shard still gets its (empty) staged file
            schema = pa.schema([("item_id", pf.schema_arrow.field(id_col).type), ("sid", pa.list_(pa.int32()))])
            pq.write_table(schema.empty_table(), tmp)
        else:
            writer.close()
            writer = None
        os.replace(tmp, dest)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return n


class _ShardEncoder:
    """A Ray Data actor: loads the model once, then encodes whole shards named by the batches it
    is given (one ``{"index", "path"}`` row per call). Errors come back as data (class name and
    message) so that the driver re-raises the same one-line :class:`SidkitError`."""

    def __init__(self, model_dir: str, stage_dir: str, id_col: str, batch_size: int) -> None:
        self.stage_dir = Path(stage_dir)
        self.id_col = id_col
        self.batch_size = batch_size
        self.node = socket.gethostname()
        self.error: tuple[str, str] | None = None
        try:
            from sidkit.model.directory import load_model

            if not Path(model_dir).is_dir():
                raise ModelError(f"{model_dir}: the model directory is not found on node {self.node}; on a cluster it "
                                 f"must be on storage every node sees under the same path")
            self.model = load_model(model_dir)
        except SidkitError as e:
            self.error = (type(e).__name__, str(e))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {"index": [], "rows": [], "path": [], "node": [], "error_class": [], "error": []}
        for index, path in zip(batch["index"], batch["path"]):
            index = int(index)
            dest = self.stage_dir / staged_name(index)
            err, rows = self.error, -1
            if err is None:
                try:
                    rows = encode_shard(self.model, str(path), dest, id_col=self.id_col, batch_size=self.batch_size)
                except SidkitError as e:
                    err = (type(e).__name__, str(e))
                except (OSError, pa.ArrowException) as e:  # the stage directory is not writable from this node
                    err = ("InputFileError", f"{dest}: could not write the staged codes on node {self.node} "
                                             f"({getattr(e, 'strerror', None) or e}); the stage directory must be writable from every node")
            out["index"].append(index)
            out["rows"].append(rows)
            out["path"].append(str(dest))
            out["node"].append(self.node)
            out["error_class"].append(err[0] if err else "")
            out["error"].append(err[1] if err else "")
        return out


def _raise_worker_error(cls_name: str, message: str) -> None:
    from sidkit import errors

    cls = getattr(errors, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, SidkitError)):
        cls = SidkitError
    raise cls(message)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) address that refuses a TCP connection is a one-line
    error now, not a minute of Ray's connection retries."""
    if not address or address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"{opt('address')} {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                          f"'ray start --head', or pass {opt('address')} auto on a node of the cluster") from None


def _node_cpus(ray) -> list[float]:
    """CPUs of every live node of the cluster."""
    cpus = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive", True)]
    return [c for c in cpus if c > 0] or [float(ray.cluster_resources().get("CPU", 1.0))]


def _fits(node_cpus: Sequence[float], cpus: float, workers: int) -> bool:
    return sum(int(c / cpus + 1e-9) for c in node_cpus) >= workers


def worker_cpus(node_cpus: Sequence[float], workers: int) -> float:
    """The most CPUs each of ``workers`` actors can reserve so that all of them fit on the nodes
    at once (an actor lives on one node): the cluster's CPUs shared out, at most one node's worth.
    Fewer than 1 CPU each when there are more workers than CPUs."""
    cands = sorted({c / k for c in node_cpus for k in range(1, workers + 1)}, reverse=True)
    for cand in cands:
        if _fits(node_cpus, cand, workers):
            return cand
    return max(node_cpus) / workers  # pragma: no cover  (the k = workers candidate always fits)


def ray_map_stage(model_dir: str | os.PathLike, source, stage_dir: str | os.PathLike, *, id_col: str,
                  address: str | None = None, workers: int = 1, batch_size: int = 65536,
                  cpus_per_worker: float | None = None, progress=None) -> list[Path]:
    """Run the map stage of an encode on Ray Data; return the staged files in shard order.

    Parameters
    ----------
    model_dir : the model directory (each actor loads it once; every node must see it).
    source : the catalog, a :class:`~sidkit.io.source.ParquetSource` (or a path for one).
    stage_dir : an existing directory for the staged files (every node must be able to write it).
    id_col : the catalog's id column.
    address : the Ray cluster to join (``"auto"``: the one this node belongs to; ``"ray://host:10001"``:
        a remote one via Ray Client). ``None``: an already initialised Ray, else a local cluster
        started for this call and stopped afterwards.
    workers : actors in the pool (each loads the model once and encodes whole shards).
    batch_size : rows per record batch inside an actor.
    cpus_per_worker : CPUs each actor reserves (and so the threads torch uses in it). Default:
        :func:`worker_cpus`, the cluster's CPUs shared out so that every actor fits on a node.
    progress : optional callback ``(stage, done_rows, total_rows, info)``, called as shards finish.

    Staged files of shards that finished are left in ``stage_dir`` when a later shard fails; the
    caller owns (and removes) the directory.
    """
    from sidkit.io.source import open_source

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{opt('workers')} must be a whole number >= 1, got {workers!r}")
    if cpus_per_worker is not None and not (cpus_per_worker > 0):
        raise ConfigError(f"{opt('cpus_per_worker')} must be > 0, got {cpus_per_worker!r}")
    source = open_source(source)
    stage_dir = Path(stage_dir).resolve()
    if not stage_dir.is_dir():
        raise InputFileError(f"{stage_dir}: the stage directory does not exist; create it first")
    model_dir = Path(model_dir).resolve()
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra has no ray.data)
    except ImportError:
        raise ConfigError(RAY_MISSING) from None

    with _ray_session(ray, address):
        # Share the cluster's CPUs among the actors (torch in an actor uses that many threads), but
        # never ask for more than the nodes hold, or the pool waits forever for its last actor.
        node_cpus = _node_cpus(ray)
        if cpus_per_worker is None:
            cpus_per_worker = worker_cpus(node_cpus, workers)
        elif not _fits(node_cpus, cpus_per_worker, workers):
            raise ConfigError(f"{opt('workers')} {workers} actors of {cpus_per_worker:g} CPUs do not fit on the "
                              f"cluster's nodes ({', '.join(f'{c:g}' for c in node_cpus)} CPUs); lower {opt('workers')}")
        done = _run_pool(ray, source, model_dir, stage_dir, id_col=id_col, workers=workers, batch_size=batch_size,
                         cpus_per_worker=cpus_per_worker, progress=progress)
    return _check_staged(source, stage_dir, done)


@contextlib.contextmanager
def _ray_session(ray, address: str | None) -> Iterator[None]:
    """Join (or start, then stop) a Ray cluster, with Ray Data's progress bars and per-run log
    lines off stdout (sidkit reports progress itself); everything is restored on the way out."""
    started = False
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            kw = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
            ray.init(address=address, **kw) if address else ray.init(**kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            msg = " ".join(str(e).split())[:160]
            raise ConfigError(f"{opt('address')} {address or '(local)'}: could not start or join a Ray cluster ({msg}); "
                              f"start one with 'ray start --head' or pass {opt('address')} auto on a cluster node") from None
        started = True
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start)
    ctx.enable_progress_bars, ctx.print_on_execution_start = False, False
    quiet = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}  # "progress bars disabled"
    saved_levels = {name: logging.getLogger(name).level for name in quiet}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        if started:
            ray.shutdown()


def _run_pool(ray, source, model_dir: Path, stage_dir: Path, *, id_col: str, workers: int, batch_size: int,
              cpus_per_worker: float, progress) -> dict[int, tuple[int, str, str]]:
    """One ``map_batches`` call per shard on a pool of :class:`_ShardEncoder` actors; returns
    {shard index: (rows, staged path, node)}, re-raising the first worker error."""
    items = [{"index": i, "path": str(Path(s).resolve())} for i, s in enumerate(source.shards)]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        _ShardEncoder,
        fn_constructor_kwargs={"model_dir": str(model_dir), "stage_dir": str(stage_dir), "id_col": id_col,
                               "batch_size": int(batch_size)},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
    )
    done: dict[int, tuple[int, str, str]] = {}
    n_rows = 0
    for row in ds.iter_rows():
        i = int(row["index"])
        if row["error_class"]:
            _raise_worker_error(str(row["error_class"]), str(row["error"]))
        done[i] = (int(row["rows"]), str(row["path"]), str(row["node"]))
        n_rows += int(row["rows"])
        if progress:
            progress("encode", n_rows, source.num_rows, {"shards": f"{len(done)}/{len(items)}"})
    return done


def _check_staged(source, stage_dir: Path, done: dict[int, tuple[int, str, str]]) -> list[Path]:
    """Every shard came back once, with its row count, in a file this process can see."""
    files = []
    for i, shard in enumerate(source.shards):
        if i not in done:
            raise SidkitError(f"{shard}: the Ray map stage returned no result for this shard; re-run the encode")
        rows, path, node = done[i]
        p = Path(path)
        if not p.exists():
            raise InputFileError(f"{p}: staged codes written on node {node} are not visible on this node; the stage "
                                 f"directory (and the model and catalog) must be on storage every node sees")
        if rows != source.shard_rows[i]:
            raise InputFileError(f"{shard}: the map stage encoded {rows} rows but the shard has {source.shard_rows[i]}; "
                                 f"the file changed during the encode, re-run it")
        files.append(p)
    return files

