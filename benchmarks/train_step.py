"""Images per second of this project's training step against a straight TF2 port of the post.

In one process, on the same networks, data and batch size, for each comparison:

  (a) `project`: `WAETrainer` exactly as the train stage runs it (seeded, in-memory uint8 images
      gathered per batch, `steps_per_execution` steps per compiled call), timed over
      `fit(progress=False, stop=StopAfterSteps(N))` calls, with the project's networks (batch norm
      trained by TensorFlow's fused kernel, `wae.layers`);
  (b) `eager`: the obvious TF2 port of the reference post's model_fn/input_fn: float32 images from
      `from_tensor_slices(x).shuffle(10000).repeat().batch(B)`, the post's losses (sigmoid
      discriminator, log(p + 1e-6)), two Adam optimisers, the discriminator called separately on
      prior and encoded codes, the networks' layers as Keras ships them, one eager GradientTape
      step per batch;
  (c) `function`: the same step as (b) under a plain `tf.function`, fed by the same pipeline.

With the MMD penalty, (b) and (c) take `wae.regularisers.mmd.mmd_penalty` and one optimiser instead of
the post's discriminator (the ports know these two penalties only). (b) and (c) always compute in
float32, as the post does.

Two comparisons by default: `post` (the post's setup: its networks, latent 1, batch 218, lr 8e-5,
lambda 0.001, MSE, GAN penalty) and the default architecture with the settings of params.yaml's
`train` section. Warm-up steps (traces included) are not timed. Each variant then runs a fixed number
of steps per round (--steps/--eager-steps, or sized once from two probe steps to take about
--seconds), rounds interleave the variants (rotating their order), and the median round counts.
A loss is read back at the end of each timed block, so the measured work is finished. Wall time
(img/s) and process CPU time are both recorded: on a machine shared with other jobs, CPU time
per image is the steadier figure.

    python benchmarks/train_step.py --out reports/benchmark.json        # `make bench`
    python benchmarks/train_step.py --architecture small --penalty gan --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import psutil
import tensorflow as tf

from wae.architectures import ARCHITECTURES
from wae.config import Params, TrainConfig, load_params
from wae.data import load_mnist, load_prepared, prepare, split
from wae.errors import TrainingInterrupted, WAEError
from wae.models import build_adversary, build_models
from wae.regularisers.mmd import mmd_penalty
from wae.stopping import StopAfterSteps
from wae.training import WAETrainer, seed_everything

REPO = Path(__file__).resolve().parents[1]
BatchNorm = keras.layers.BatchNormalization  # the layer Keras ships, which (b) and (c) train with
VARIANTS = {
    "a": "project: WAETrainer.fit (uint8 gather, steps_per_execution)",
    "b": "eager: GradientTape port of the post, tf.data float32 pipeline",
    "c": "function: the same step under tf.function, same pipeline",
}
TARGETS = {"a_over_c": 1.1, "a_over_b": 4.0}
SHUFFLE_BUFFER = 10000  # the post's input_fn


def post_config(base: TrainConfig) -> TrainConfig:
    """The reference post's setup (its params dict and model_fn) on this project's knobs."""
    return dataclasses.replace(
        base,
        architecture="post",
        latent_dim=1,
        prior_std=2.0,  # tf.random.normal(shape, 0.0, 2.0)
        penalty="gan",
        lambda_=0.001,
        recon_cost="mse",
        recon_weight=1.0,
        batch_size=218,
        lr=8e-5,
        disc_lr=8e-5,
        adam_beta1=0.9,  # tf.train.AdamOptimizer's default
        lr_schedule="constant",
        lr_milestones=(),
        lr_factors=(),
    )


def comparison_configs(p: Params, architectures: list[str] | None, penalty: str | None) -> list[TrainConfig]:
    """`post` in the post's setup; any other architecture with params.yaml's train settings."""
    default = p.train
    wanted = architectures or list(dict.fromkeys(["post", default.architecture]))
    configs = []
    for arch in dict.fromkeys(wanted):
        if arch == default.architecture:
            cfg = default
        elif arch == "post":
            cfg = post_config(default)
        else:
            cfg = dataclasses.replace(default, architecture=arch)
        if penalty:
            cfg = dataclasses.replace(cfg, penalty=penalty)
        configs.append(cfg)
    return configs


# ---------------------------------------------------------------------------------- the variants
class ProjectStep:
    """(a) The train stage's loop: seed, construct WAETrainer with the config, call fit."""

    def __init__(
        self, cfg: TrainConfig, x_train: np.ndarray, x_val: np.ndarray, fused_batch_norm: bool
    ) -> None:
        seed_everything(cfg.seed)
        models = build_models if fused_batch_norm else functools.partial(build_models, batch_norm=BatchNorm)
        self.trainer = WAETrainer(cfg, x_train, x_val, build_models=models)
        self.precision = self.trainer.precision  # train.precision as resolved on this machine
        self.batch_norm = "fused" if fused_batch_norm else "keras"

    def run(self, steps: int) -> float:
        # Stopped after `steps` steps, as a signal would stop it (no checkpoint folder: nothing saved).
        with contextlib.suppress(TrainingInterrupted):
            self.trainer.fit(progress=False, stop=StopAfterSteps(steps))
        # fit starts a fresh epoch: the sums cover this call's steps (reconstruction + lambda * penalty)
        recon, penalty = self.trainer.loss_sums.numpy()[:2] / steps
        return float(recon + self.trainer.config.lambda_ * penalty)

    def traces(self) -> int:
        return self.trainer.trace_count


class PortStep:
    """(b)/(c) The post's model_fn and input_fn as a plain TF2 loop (compiled: tf.function)."""

    def __init__(self, cfg: TrainConfig, dataset: tf.data.Dataset, compiled: bool) -> None:
        seed_everything(cfg.seed)
        self.cfg = cfg
        # The same networks as (a), with the layers Keras ships (stock BatchNormalization, which (a)
        # trains with TensorFlow's fused kernel); the post's final sigmoid is in the loss.
        self.models = build_models(cfg, batch_norm=BatchNorm)
        self.discriminator = build_adversary(cfg) if cfg.penalty == "gan" else None
        self.batches = iter(dataset)
        self.ae_vars = self.models.encoder.trainable_variables + self.models.decoder.trainable_variables
        self.ae_opt = keras.optimizers.Adam(cfg.lr, beta_1=cfg.adam_beta1)
        self.ae_opt.build(self.ae_vars)
        if self.discriminator is not None:
            self.d_opt = keras.optimizers.Adam(cfg.disc_lr, beta_1=cfg.adam_beta1)
            self.d_opt.build(self.discriminator.trainable_variables)
        self.n_traces = 0
        self.precision, self.batch_norm = "float32", "keras"
        self.compiled = compiled
        self.step = tf.function(self._step) if compiled else self._step

    def _step(self, x: tf.Tensor) -> tf.Tensor:
        self.n_traces += 1  # under tf.function: only while tracing
        cfg, m, d, lam = self.cfg, self.models, self.discriminator, self.cfg.lambda_
        with tf.GradientTape() as ae_tape, tf.GradientTape() as d_tape:
            z = tf.cast(m.encoder(x, training=True), tf.float32)
            x_hat = tf.cast(m.decoder(z, training=True), tf.float32)
            squared = tf.square(x - x_hat)
            per_image = (tf.reduce_mean if cfg.recon_cost == "mse" else tf.reduce_sum)(
                squared, axis=[1, 2, 3]
            )
            recon = cfg.recon_weight * tf.reduce_mean(per_image)
            z_prior = tf.random.normal(tf.shape(z), 0.0, cfg.prior_std)
            if d is None:
                ae_loss = recon + lam * mmd_penalty(z, z_prior, cfg.prior_std)
            else:
                prior_prob = tf.sigmoid(tf.cast(d(z_prior, training=True), tf.float32))
                encoded_prob = tf.sigmoid(tf.cast(d(z, training=True), tf.float32))
                d_loss = lam * -tf.reduce_mean(
                    tf.math.log(prior_prob + 1e-6) + tf.math.log(1.0 - encoded_prob + 1e-6)
                )
                ae_loss = recon - lam * tf.reduce_mean(tf.math.log(encoded_prob + 1e-6))
        if d is not None:
            d_vars = d.trainable_variables
            self.d_opt.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
        self.ae_opt.apply_gradients(zip(ae_tape.gradient(ae_loss, self.ae_vars), self.ae_vars, strict=True))
        return ae_loss

    def run(self, steps: int) -> float:
        loss = None
        for _ in range(steps):
            loss = self.step(next(self.batches))
        return float(loss)

    def traces(self) -> int:
        return self.n_traces if self.compiled else 0  # eager: no traces, the count is every call


def port_dataset(x_train: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """The post's input_fn: float32 images, shuffle(10000), repeat, batch (no prefetch)."""
    x_float = x_train.astype(np.float32) / 255.0
    return tf.data.Dataset.from_tensor_slices(x_float).shuffle(SHUFFLE_BUFFER).repeat().batch(batch_size)


# ---------------------------------------------------------------------------------- measurement
def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(variant: ProjectStep | PortStep, steps: int) -> tuple[float, float, float]:
    """Wall seconds, process CPU seconds (all threads) and the loss read back at the end."""
    wall, cpu = time.perf_counter(), time.process_time()
    loss = variant.run(steps)  # a loss read back from the device: the measured work is finished
    return time.perf_counter() - wall, time.process_time() - cpu, loss


def build_variant(name: str, cfg: TrainConfig, data: dict[str, Any], args: argparse.Namespace):
    # Each variant starts from Keras' default float32 policy, as a fresh `train` process does;
    # (a) sets its own from train.precision (--precision overrides it) while building its networks.
    keras.mixed_precision.set_global_policy("float32")
    if name == "a":
        if args.precision:
            cfg = dataclasses.replace(cfg, precision=args.precision)
        return ProjectStep(cfg, data["x_train"], data["x_val"], fused_batch_norm=not args.keras_batch_norm)
    return PortStep(cfg, data["dataset"], compiled=name == "c")


def choose_steps(name: str, variant: ProjectStep | PortStep, args: argparse.Namespace, limit: int) -> int:
    """The fixed number of steps every round of this variant runs: given, or ~--seconds per round."""
    fixed = args.eager_steps if name == "b" else args.steps
    if fixed:
        return min(fixed, limit)
    probe = 2
    seconds, _, _ = timed(variant, probe)  # untimed for the results: only sizes the rounds
    return max(2, min(limit, math.ceil(args.seconds * probe / seconds)))


def compare(cfg: TrainConfig, x_train: np.ndarray, x_val: np.ndarray, args: argparse.Namespace) -> dict:
    batch = cfg.batch_size
    per_epoch = len(x_train) // batch  # (a) must not reach the end of an epoch (validation)
    print(
        f"\n== {cfg.architecture} / {cfg.penalty}: batch {batch}, latent {cfg.latent_dim}, "
        f"steps_per_execution {cfg.steps_per_execution}, {args.rounds} rounds",
        flush=True,
    )
    rss_before = rss_mb()
    data = {"x_train": x_train, "x_val": x_val, "dataset": port_dataset(x_train, batch)}
    port_data_mb = rss_mb() - rss_before  # (b)/(c)'s float32 copy of the digits; (a) keeps uint8
    names = [n for n in "abc" if n in args.variants]
    variants: dict[str, ProjectStep | PortStep] = {}
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        started, rss_at_start = time.perf_counter(), rss_mb()
        variants[name] = variant = build_variant(name, cfg, data, args)
        variant.run(args.warmup)  # traces, tf.data's first shuffle buffer, optimiser slots
        warmup_seconds = time.perf_counter() - started
        steps = choose_steps(name, variant, args, per_epoch if name == "a" else 10**6)
        results[name] = {
            "label": VARIANTS[name],
            "precision": variant.precision,
            "batch_norm": variant.batch_norm,
            "steps": steps,
            "batch_size": batch,
            "warmup_steps": args.warmup,
            "warmup_seconds": warmup_seconds,
            # what building and warming up this variant added to the process (networks, optimiser
            # slots, traced graphs, the shuffle buffer); the process's peak RSS is shared by all
            "rss_growth_mb": rss_mb() - rss_at_start,
            "seconds": [],
            "cpu_seconds": [],
            "img_per_s_rounds": [],
            "rss_mb": [],
            "peak_rss_mb": [],
        }
        print(f"  {name}: built and warmed up in {warmup_seconds:.1f} s; {steps} steps a round", flush=True)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no variant always first
        for name in order:
            res = results[name]
            seconds, cpu, loss = timed(variants[name], res["steps"])
            res["seconds"].append(seconds)
            res["cpu_seconds"].append(cpu)
            res["img_per_s_rounds"].append(res["steps"] * batch / seconds)
            res["rss_mb"].append(rss_mb())
            res["peak_rss_mb"].append(peak_rss_mb())
            res["loss_read_back"] = loss
            print(
                f"  round {r + 1}/{args.rounds} {name}: {res['img_per_s_rounds'][-1]:8.1f} img/s "
                f"({seconds:6.2f} s wall, {cpu / res['steps'] * 1000:7.1f} CPU ms/step, "
                f"rss {res['rss_mb'][-1]:.0f} MB, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    for name in names:
        res = results[name]
        rates = res["img_per_s_rounds"]
        res["img_per_s"] = statistics.median(rates)
        res["spread"] = (max(rates) - min(rates)) / res["img_per_s"]  # (max - min) / median
        # CPU time per image hardly depends on other jobs' load: a steadier figure than img/s here
        res["cpu_ms_per_step"] = statistics.median(res["cpu_seconds"]) / res["steps"] * 1000
        res["img_per_cpu_s"] = batch * 1000 / res["cpu_ms_per_step"]
        res["rss_after_mb"] = res.pop("rss_mb")[-1]
        res["peak_rss_after_mb"] = res.pop("peak_rss_mb")[-1]
        res["traces"] = variants[name].traces()
    out: dict[str, Any] = {
        "name": cfg.architecture,
        "config": {
            "architecture": cfg.architecture,
            "penalty": cfg.penalty,
            "batch_size": batch,
            "latent_dim": cfg.latent_dim,
            "lambda": cfg.lambda_,
            "recon_cost": cfg.recon_cost,
            "steps_per_execution": cfg.steps_per_execution,
            "xla": cfg.xla,
            "precision": args.precision or cfg.precision,
        },
        "rss_before_mb": rss_before,
        "port_dataset_rss_mb": port_data_mb,
        "variants": results,
    }
    if "a" in results:
        for other in ("b", "c"):
            if other in results:
                a, o = results["a"]["img_per_s_rounds"], results[other]["img_per_s_rounds"]
                out[f"a_over_{other}"] = results["a"]["img_per_s"] / results[other]["img_per_s"]
                # the same round ran both: a ratio per round cancels slow drifts of the machine's load
                out[f"a_over_{other}_paired"] = statistics.median(x / y for x, y in zip(a, o, strict=True))
                out[f"a_over_{other}_cpu"] = results["a"]["img_per_cpu_s"] / results[other]["img_per_cpu_s"]
                out[f"a_over_{other}_target"] = TARGETS[f"a_over_{other}"]
                out[f"a_over_{other}_met"] = out[f"a_over_{other}"] >= TARGETS[f"a_over_{other}"]
    del variants, data
    return out


# ---------------------------------------------------------------------------------- set-up
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0: TF's default
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def training_digits(args: argparse.Namespace, p: Params) -> tuple[np.ndarray, np.ndarray, str]:
    """The prepared split if there is one; else MNIST split as the prepare stage would (all digits)."""
    if args.mnist:
        s = split(load_mnist(args.mnist), p.data.val_size, 0, p.data.seed)
        return s.x_train, s.x_val, str(args.mnist)
    if args.data.is_file():
        s = load_prepared(args.data)
        return s.x_train, s.x_val, str(args.data)
    s = prepare(dataclasses.replace(p.data, train_subset=0))  # $WAE_DATA_HOME/mnist or data.source
    return s.x_train, s.x_val, f"data.source = {p.data.source}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml", help="params.yaml to read")
    ap.add_argument(
        "--data",
        type=Path,
        default=REPO / "data/prepared/mnist.npz",
        help="the prepared split (default: the prepare stage's output, when present)",
    )
    ap.add_argument("--mnist", type=Path, help="a folder of MNIST IDX files (or mnist.npz) instead of --data")
    ap.add_argument(
        "--architecture",
        nargs="+",
        choices=list(ARCHITECTURES),
        help="comparisons to run (default: post and params.yaml's train.architecture)",
    )
    ap.add_argument(
        "--penalty",
        choices=["mmd", "gan"],
        help="override every comparison's penalty (the ports know these two)",
    )
    ap.add_argument("--batch-size", type=int, help="override every comparison's batch size")
    ap.add_argument("--steps-per-execution", type=int, help="override train.steps_per_execution for (a)")
    ap.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="size each variant's rounds to about this many seconds, from 2 probe steps (default 3)",
    )
    ap.add_argument("--steps", type=int, help="fixed steps per round for (a) and (c) instead of --seconds")
    ap.add_argument("--eager-steps", type=int, help="fixed steps per round for (b) instead of --seconds")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before the rounds (traces)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median counts")
    ap.add_argument("--variants", default="abc", help="which of a, b, c to run (default: all)")
    ap.add_argument(
        "--precision",
        choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"],
        help="override train.precision for (a); (b) and (c) always compute in float32",
    )
    ap.add_argument(
        "--keras-batch-norm",
        action="store_true",
        help="(a) trains batch norm with Keras's own layer, as (b) and (c) do, not the fused kernel",
    )
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    for name in ("steps", "eager_steps", "warmup", "rounds", "seconds"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    if not set(args.variants) <= set("abc") or not args.variants:
        ap.error("--variants takes letters among a, b, c")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    load_start = os.getloadavg()
    p = load_params(args.params)
    configs = comparison_configs(p, args.architecture, args.penalty)
    overrides: dict[str, Any] = {}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.steps_per_execution:
        overrides["steps_per_execution"] = args.steps_per_execution
    configs = [dataclasses.replace(c, **overrides) for c in configs]
    x_train, x_val, source = training_digits(args, p)
    for cfg in configs:
        needed = (args.warmup + 2) * cfg.batch_size
        if needed > len(x_train):
            raise WAEError(
                f"{cfg.architecture}: a warm-up and 2 steps of {cfg.batch_size} digits need {needed} "
                f"training digits within one epoch, the data has {len(x_train)}; use all the digits "
                "(data.train_subset: 0) or --mnist"
            )
    m = machine()
    print(
        f"{m['cpu_model']}, {m['usable_cores']} cores, TF {m['tensorflow']}, "
        f"load average {load_start[0]:.2f}; data {source} ({len(x_train)} training digits)",
        flush=True,
    )
    comparisons = [compare(cfg, x_train, x_val, args) for cfg in configs]
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": m,
        "data": {"source": source, "n_train": len(x_train)},
        "settings": {
            "steps": args.steps or "sized by --seconds",
            "eager_steps": args.eager_steps or "sized by --seconds",
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "variants": {n: VARIANTS[n] for n in "abc" if n in args.variants},
        },
        "comparisons": comparisons,
        "peak_rss_mb": peak_rss_mb(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "total_seconds": time.perf_counter() - started,
    }
    print_summary(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return report


def print_summary(report: dict[str, Any]) -> None:
    print(
        "\narchitecture/penalty  batch   (a) img/s  (b) img/s  (c) img/s     a/b    a/c"
        "   a/b cpu a/c cpu  rss MB after a/b/c"
    )
    for comp in report["comparisons"]:
        v, c = comp["variants"], comp["config"]

        def rate(name: str, v: dict = v) -> str:
            return f"{v[name]['img_per_s']:10.1f}" if name in v else f"{'-':>10}"

        def ratio(key: str, comp: dict = comp) -> str:
            return f"{comp[key]:6.2f}" if key in comp else f"{'-':>6}"

        rss = "/".join(f"{v[n]['rss_after_mb']:.0f}" if n in v else "-" for n in "abc")
        print(
            f"{c['architecture'] + '/' + c['penalty']:<20} {c['batch_size']:6d} {rate('a')} {rate('b')} "
            f"{rate('c')}  {ratio('a_over_b')} {ratio('a_over_c')}    {ratio('a_over_b_cpu')}  "
            f"{ratio('a_over_c_cpu')}  {rss}"
        )
    load = report["load_average"]
    print(
        f"img/s: median of the rounds; cpu: ratio of images per CPU-second (steadier on a busy machine)\n"
        f"peak RSS {report['peak_rss_mb']:.0f} MB; load average {load['start'][0]:.2f} -> {load['end'][0]:.2f} "
        f"on {report['machine']['usable_cores']} cores; {report['total_seconds']:.0f} s in all"
    )


if __name__ == "__main__":
    try:
        main()
    except WAEError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
