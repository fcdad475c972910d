"""Which process of a multi-worker cluster writes: the chief, as TensorFlow names it.

Under `train.strategy: multi_worker` every worker runs the same training in lockstep, and they end with
the same weights; one of them, the chief, keeps the result (models, reports, checkpoints, the MLflow
run). Read from TF_CONFIG without starting TensorFlow: a worker learns its role before it opens a
tracking run or waits for the cluster.
"""

from __future__ import annotations

import json
import os

from wae.errors import WAEError


def is_chief(strategy: str, tf_config: str | None = None) -> bool:
    """Whether this process keeps the outputs: always, but under `multi_worker` only the chief.

    TensorFlow's rule (`multi_worker_util.is_chief`): the task of type `chief` if the cluster has one,
    else worker 0 (an `evaluator` is the chief of its own cluster of one). Without TF_CONFIG a
    multi-worker strategy is a cluster of one, its own chief.
    """
    if strategy != "multi_worker":
        return True
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw.strip():
        return True
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster") or {}, config["task"]
        task_type, index = task["type"], int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WAEError(
            f"TF_CONFIG is not a cluster description ({err!r}): expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}'
        ) from None
    if task_type in ("chief", "evaluator"):
        return True
    return "chief" not in cluster and task_type == "worker" and index == 0


def task_label(tf_config: str | None = None) -> str:
    """`worker 1` (the task TF_CONFIG names), for messages."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    try:
        task = json.loads(raw)["task"]
        return f"{task['type']} {task.get('index', 0)}"
    except (ValueError, KeyError, TypeError):
        return "this worker"
