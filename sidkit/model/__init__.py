"""The model directory: layout, reading, validation, lock and writing.

A model directory is what ``sidkit fit --out DIR`` writes. Its files, by name
(:mod:`sidkit.model.layout` defines the names and the format versions):

| file | written by | read by |
|---|---|---|
| ``sidkit.json`` | ``fit``: :func:`~sidkit.model.directory.model_meta` (format version, method, config, estimator class + params, fusion, input, training) | every loader: :func:`~sidkit.model.files.read_meta` validates it (``load_model``, KAE's slot commands, a refit that carries bindings over) |
| ``model.safetensors`` | ``fit``: the tokenizer's ``state_dict()`` (:func:`~sidkit.model.directory.save_tensors`, fingerprinted) | ``load_model`` (checked against ``sidkit.json``'s fingerprint, :func:`~sidkit.model.files.check_tensors`); ``bind-slot`` (routing rows) |
| ``codes.parquet`` | ``fit``: the fitted codes and suffixes (metadata: method, sizes, fingerprint) | ``encode`` (items the model already coded; :func:`~sidkit.model.files.check_model_codes`) |
| ``codebooks.parquet`` | ``fit``: the tokenizer's ``codebooks_table(codes)`` | users |
| ``report.json``, ``report.html`` | ``fit``: the audit of the fitted codes | users |
| ``train_log.parquet`` | ``fit``: RQ-VAE's ``extra_files()`` | users |
| ``slots.json`` | ``fit`` (KAE ``extra_files()``: a new registry, or the old one's bindings carried over); replaced in place by ``bind-slot`` / ``unbind-slot`` under the lock (:func:`~sidkit.model.layout.replace_file`) | ``load_model`` (KAE ``attach``), the slot commands, a refit (:mod:`sidkit.kae.slots` validates it) |
| ``kae.toml`` | ``fit``: KAE's plan | users, ``sidkit fit --plan`` |

Beside the directory: ``.NAME.lock`` (:mod:`sidkit.model.lock`, held by ``fit``'s swap and each
slot change) and, while a writer runs or after it was killed, ``.NAME.XXXXXXXX.tmp|stage|old``
(:mod:`sidkit.io.artifacts`; a killed swap's ``.old`` is put back by
:func:`~sidkit.model.layout.recover_dir`).

Modules: :mod:`~sidkit.model.layout` (names, versions, the one reader ``ModelDir``, recovery),
:mod:`~sidkit.model.lock` (the lock), :mod:`~sidkit.model.files` (validation of each file against
the others) — layer 1, used by KAE — and :mod:`~sidkit.model.directory` (layer 4: write a whole
directory atomically, load one and rebuild its tokenizer through :mod:`sidkit.methods`).
"""
