"""Collision-aware regularizers for the RQ-VAE trainer (METHODS.md §1.7, §1.8, §3, §4).

* :class:`~sidkit.regularizers.quasid.QuaSID` — Hamming-guided margin repulsion with
  severity-scaled margins and conflict-aware valid-pair masking, plus collaborative alignment.
* :class:`~sidkit.regularizers.adasid.AdaSID` — semantic-adaptive relaxation, load-adaptive
  budget-preserving allocation and a progress schedule that shifts weight from repulsion to
  alignment.

Both plug into :meth:`sidkit.quantizers.rqvae.RQVAE.fit` through ``regularizers=[...]``. The
hyperparameters live in four blocks (METHODS.md §8): ``mining``, ``align``, ``quasid`` and
``adasid``; their defaults and bounds live with every other fit option in :mod:`sidkit.config`
(:data:`DEFAULTS` here is ``sidkit.config.BLOCK_DEFAULTS``; :func:`resolve_blocks` merges and
validates user values from the TOML tables ``[fit.mining]``, ``[fit.align]``, ``[fit.quasid]``,
``[fit.adasid]``). Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any, Mapping

from sidkit.errors import ConfigError, opt

from sidkit.config import BLOCK_DEFAULTS as DEFAULTS, REGULARIZERS, resolve_blocks

def make_regularizer(name: str, blocks: Mapping[str, Mapping[str, Any]], *, catalog_info: Mapping[str, Any] | None = None,
                     interactions=None):
    """Build the regularizer ``name`` ('quasid' | 'adasid') from resolved blocks.

    ``catalog_info`` may hold ``texts`` (list of str or None: title + description), ``groups``
    (list of group ids) and ``leaf`` (leaf categories); ``interactions`` is a
    :class:`~sidkit.regularizers.align.TrainInteractions` or None (no alignment)."""
    if name == "quasid":
        from sidkit.regularizers.quasid import QuaSID

        return QuaSID(blocks, catalog_info=catalog_info, interactions=interactions)
    if name == "adasid":
        from sidkit.regularizers.adasid import AdaSID

        return AdaSID(blocks, catalog_info=catalog_info, interactions=interactions)
    raise ConfigError(f"{opt('regularizer')} '{name}' is not known; choose one of {', '.join(REGULARIZERS)}")


__all__ = ["DEFAULTS", "REGULARIZERS", "make_regularizer", "resolve_blocks"]
