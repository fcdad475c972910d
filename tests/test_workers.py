"""Which process of a multi-worker cluster keeps the outputs: `wae.workers.is_chief` against TensorFlow's rule."""

from __future__ import annotations

import json

import pytest

from wae.errors import WAEError
from wae.workers import is_chief, task_label

TWO_WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}
WITH_CHIEF = {"chief": ["127.0.0.1:2221"], "worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


@pytest.mark.parametrize(
    ("cluster", "task_type", "index"),
    [
        (TWO_WORKERS, "worker", 0),
        (TWO_WORKERS, "worker", 1),
        (WITH_CHIEF, "chief", 0),
        (WITH_CHIEF, "worker", 0),
        (WITH_CHIEF, "worker", 1),
        ({**TWO_WORKERS, "evaluator": ["127.0.0.1:2224"]}, "evaluator", 0),
    ],
)
def test_the_chief_is_the_one_tensorflow_names(cluster, task_type, index):
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.training import server_lib

    tf_config = json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
    expected = multi_worker_util.is_chief(server_lib.ClusterSpec(cluster), task_type, index)
    assert is_chief("multi_worker", tf_config) is expected
    assert task_label(tf_config) == f"{task_type} {index}"


def test_every_process_keeps_its_outputs_outside_a_cluster():
    worker_1 = json.dumps({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}})
    assert is_chief("none", worker_1) and is_chief("mirrored", worker_1)
    assert is_chief("multi_worker", ""), "no TF_CONFIG: a cluster of one"


def test_a_malformed_tf_config_is_named():
    with pytest.raises(WAEError, match="TF_CONFIG is not a cluster description"):
        is_chief("multi_worker", '{"cluster": {}}')
