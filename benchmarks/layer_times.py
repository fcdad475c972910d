"""Where a training step's time goes: each layer's forward and backward pass, timed on its own.

Builds the networks of an architecture under a precision (as `train` would on this machine), then, for
every layer of the encoder and the decoder, times one compiled forward + backward pass (gradients of
the layer's input and weights) on a batch of the shapes that layer sees in training. The sum is close
to a training step's cost without the optimiser updates and the penalty.

    python benchmarks/layer_times.py                      # params.yaml's architecture and precision
    python benchmarks/layer_times.py --architecture post     # the post's setup, as make bench compares it
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from train_step import comparison_configs  # this folder's benchmark, beside this script

from wae.architectures import ARCHITECTURES
from wae.config import load_params
from wae.devices import resolve_precision
from wae.models import build_models

REPO = Path(__file__).resolve().parents[1]


def time_layer(layer: keras.layers.Layer, inputs: tf.Tensor, repeats: int) -> float:
    """Milliseconds of one compiled forward + backward pass of the layer (median of 3 blocks)."""

    @tf.function
    def step() -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(tf.cast(layer(inputs, training=True), tf.float32))
        return tape.gradient(loss, [inputs, *layer.trainable_variables])

    for _ in range(3):  # trace and warm up
        step()
    blocks = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            grads = step()
        grads[0].numpy()  # the work is finished
        blocks.append((time.perf_counter() - started) / repeats * 1000)
    return sorted(blocks)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--architecture", choices=list(ARCHITECTURES))
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
    ap.add_argument("--repeats", type=int, default=30, help="passes per timed block")
    args = ap.parse_args()

    # The networks the benchmark compares: `post` in the post's setup, others with params.yaml's.
    p = load_params(args.params)
    (cfg,) = comparison_configs(p, [args.architecture or p.train.architecture], None)
    overrides = {"batch_size": args.batch_size, "precision": args.precision}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    precision = resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(precision)
    nets = build_models(cfg)

    print(f"{cfg.architecture}, batch {cfg.batch_size}, {precision}: forward + backward per layer")
    total = 0.0
    for net, shape in ((nets.encoder, (28, 28, 1)), (nets.decoder, (cfg.latent_dim,))):
        x = tf.random.stateless_uniform((cfg.batch_size, *shape), seed=(0, 0))
        for layer in net.layers:
            x = tf.cast(x, layer.compute_dtype)
            ms = time_layer(layer, x, args.repeats)
            total += ms
            print(
                f"  {net.name:8s} {layer.__class__.__name__:24s} in {tuple(x.shape)!s:20s} "
                f"{layer.compute_dtype:9s} {ms:7.2f} ms"
            )
            x = layer(x, training=False)
    print(f"  sum {total:.1f} ms per step")


if __name__ == "__main__":
    main()
