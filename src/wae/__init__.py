"""Wasserstein Auto-Encoders (Tolstikhin et al., ICLR 2018) on MNIST in TensorFlow 2.

The library: data, architectures, models, regularisers, the training loop, sampling, metrics and plots.
It knows nothing of DVC; MLflow is reached through `wae.tracking` alone.
"""

__version__ = "0.1.0"
