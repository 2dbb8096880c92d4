"""Residual quantizers: RQ-KMeans (faiss k-means per level) and RQ-VAE (torch)."""

__all__ = ["RQKMeans", "RQVAE"]


def __getattr__(name):
    if name == "RQKMeans":
        from sidkit.quantizers.rqkmeans import RQKMeans

        return RQKMeans
    if name == "RQVAE":
        from sidkit.quantizers.rqvae import RQVAE

        return RQVAE
    raise AttributeError(name)
