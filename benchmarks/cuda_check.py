"""Optional CUDA check of RQ-VAE training (run on a machine with a GPU).

Trains the same RQ-VAE on a synthetic catalog on CPU and on CUDA for the same step budget and
prints the collision rate, reconstruction MSE and training throughput of each, and checks that
the codes a CUDA-trained model wrote are what CPU encoding of the saved state gives.

    python benchmarks/cuda_check.py [--n 50000] [--steps 400]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sidkit.datasets import make_catalog
from sidkit.quantizers.rqvae import RQVAE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--steps", type=int, default=400)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device; nothing to check")
        return
    t = make_catalog(a.n, dim=384, seed=0)
    emb = t.column("embedding").combine_chunks()
    X = emb.values.to_numpy(zero_copy_only=False).reshape(a.n, 384).astype(np.float32)
    rows = []
    models = {}
    for dev in ("cpu", "cuda"):
        m = RQVAE(3, 256, latent_dim=32, max_steps=a.steps, epochs=10_000, eval_every=100, patience=0, device=dev, random_state=0)
        t0 = time.perf_counter()
        m.fit(X)
        secs = time.perf_counter() - t0
        codes = m.encode(X)
        cr = 1 - len(np.unique(codes, axis=0)) / len(codes)
        rows.append((dev, m.n_steps_, secs, m.n_steps_ * 1024 / secs, cr, m.reconstruction_mse(X), m.best_step_))
        models[dev] = (m, codes)
    print(f"{'device':8}{'steps':>7}{'seconds':>9}{'items/s':>11}{'collision':>11}{'recon MSE':>12}{'best step':>10}")
    for r in rows:
        print(f"{r[0]:8}{r[1]:>7}{r[2]:>9.1f}{r[3]:>11.0f}{r[4]:>11.2%}{r[5]:>12.3g}{r[6]:>10}")
    m, codes = models["cuda"]
    again = RQVAE.from_state(m.params(), m.state_dict()).encode(X)
    print("cuda-trained model: CPU re-encode equals fit codes:", bool((again == codes).all()))
    print("torch", torch.__version__, torch.cuda.get_device_name(0))


if __name__ == "__main__":
    main()
