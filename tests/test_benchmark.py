"""`make bench` runs: a smoke test of benchmarks/train_step.py with tiny settings (no timing asserted)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "train_step.py"

VARIANT_FIELDS = {
    "label",
    "precision",
    "batch_norm",
    "steps",
    "batch_size",
    "warmup_steps",
    "warmup_seconds",
    "rss_growth_mb",
    "seconds",
    "cpu_seconds",
    "cpu_ms_per_step",
    "img_per_cpu_s",
    "img_per_s_rounds",
    "img_per_s",
    "spread",
    "rss_after_mb",
    "peak_rss_after_mb",
    "traces",
    "loss_read_back",
}


@pytest.mark.slow
def test_benchmark_writes_every_figure_for_both_architectures(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CI": "1"}
    tiny = ["--steps", "3", "--eager-steps", "1", "--warmup", "1", "--rounds", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--mnist", str(mnist_dir), "--data", str(tmp_path / "none.npz"), *tiny],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    machine = report["machine"]
    assert machine["cpu_model"] and machine["tensorflow"] and machine["usable_cores"] >= 1
    assert report["peak_rss_mb"] > 0 and report["total_seconds"] > 0
    assert report["data"]["n_train"] == 55000

    # the post's setup and the default architecture of params.yaml, each with a, b and c
    from wae.config import load_params

    default = load_params(REPO / "params.yaml").train
    names = [c["name"] for c in report["comparisons"]]
    assert names == list(dict.fromkeys(["post", default.architecture]))
    for comp in report["comparisons"]:
        cfg = comp["config"]
        if cfg["architecture"] == "post" != default.architecture:
            assert (cfg["penalty"], cfg["batch_size"], cfg["latent_dim"]) == ("gan", 218, 1)
        else:
            assert (cfg["penalty"], cfg["batch_size"]) == (default.penalty, default.batch_size)
        assert set(comp["variants"]) == {"a", "b", "c"}
        # (b) and (c) are the plain ports: float32, Keras's own batch-norm layer; (a) is the train stage's
        assert [comp["variants"][n]["batch_norm"] for n in "abc"] == ["fused", "keras", "keras"]
        assert comp["variants"]["b"]["precision"] == comp["variants"]["c"]["precision"] == "float32"
        assert comp["variants"]["a"]["precision"] in {"float32", "mixed_bfloat16"}
        for name, v in comp["variants"].items():
            assert set(v) >= VARIANT_FIELDS, name
            assert v["batch_size"] == cfg["batch_size"]  # one batch size within a comparison
            assert len(v["seconds"]) == len(v["img_per_s_rounds"]) == 2
            assert v["steps"] == (1 if name == "b" else 3)
            assert all(x > 0 for x in v["seconds"] + v["cpu_seconds"] + v["img_per_s_rounds"])
            for key in ("img_per_s", "img_per_cpu_s", "cpu_ms_per_step", "rss_after_mb", "peak_rss_after_mb"):
                assert v[key] > 0, (name, key)
            assert math.isfinite(v["loss_read_back"])
        # compiled variants trace once, in the warm-up; the timed rounds retrace nothing
        assert comp["variants"]["a"]["traces"] == 1 and comp["variants"]["c"]["traces"] == 1
        for key in (
            "a_over_b",
            "a_over_c",
            "a_over_b_paired",
            "a_over_c_paired",
            "a_over_b_cpu",
            "a_over_c_cpu",
        ):
            assert comp[key] > 0
        assert isinstance(comp["a_over_c_met"], bool) and isinstance(comp["a_over_b_met"], bool)
    assert "a/b" in done.stdout and "peak RSS" in done.stdout


def test_comparisons_are_the_posts_setup_and_the_params_default() -> None:
    """`post` takes the post's settings; the default architecture takes params.yaml's train section."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train_step
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from wae.config import load_params

    p = load_params(REPO / "params.yaml")
    configs = train_step.comparison_configs(p, None, None)
    post = next(c for c in configs if c.architecture == "post")
    assert (post.batch_size, post.latent_dim, post.penalty, post.lr, post.lambda_, post.recon_cost) == (
        218,
        1,
        "gan",
        8e-5,
        0.001,
        "mse",
    )
    assert configs[-1] == p.train or p.train.architecture == "post"
    only = train_step.comparison_configs(p, ["small"], "gan")
    assert [(c.architecture, c.penalty) for c in only] == [("small", "gan")]


def test_layer_times_lists_every_layer_of_both_networks(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "layer_times.py"), "--batch-size", "4", "--repeats", "1"],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    from wae.config import load_params
    from wae.models import build_models

    nets = build_models(load_params(REPO / "params.yaml").train)
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().endswith(" ms")]
    assert [r[0] for r in rows] == ["encoder"] * len(nets.encoder.layers) + ["decoder"] * len(
        nets.decoder.layers
    )
    assert all(float(r[-2]) > 0 for r in rows)
    assert "ms per step" in done.stdout
