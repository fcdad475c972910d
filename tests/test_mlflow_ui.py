"""What a user finds in MLflow after `make repro`: runs named after what they trained, the data they were
trained on, the machine's load, a summary, and the registry's scores.

One tiny project runs `dvc repro` and a DVC experiment (a second model). The tests read the store through
MLflow's client, run the README's registry command, then open the README's `mlflow ui` in a real browser
(Debian's chromium and chromium-driver through Selenium; skipped where they are not installed, installed
by .ci/run) on the page `python -m wae.tracking url` gives. Screenshots are left in the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import mlflow
import pytest
from project import make_project, project_env, sh
from servers import HOST, command_starting, free_port, readme_commands, start_service

pytestmark = pytest.mark.slow

COMMANDS = readme_commands("Compare runs")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium / chromedriver (Debian: apt-get install chromium chromium-driver)",
)
SWEPT_LAMBDA = 0.001
DEFAULT_RUN = "small-mmd-l1-z12-s0"  # the shipped params: what `dvc repro` trains


class Lab:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
        self.experiment = self.client.get_experiment_by_name("wae-mnist")

    def runs(self) -> dict[str, mlflow.entities.Run]:
        """The experiment's runs by name."""
        return {r.info.run_name: r for r in self.client.search_runs([self.experiment.experiment_id])}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, data_home_session: Path) -> Lab:
    # Short runs: sample the machine's load every second, not every 10 s.
    env = project_env(data_home_session, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1")
    root = tmp_path_factory.mktemp("lab-notebook") / "project"
    root.mkdir()
    make_project(root, env, {"train": {"epochs": 1}})
    sh(command_starting(COMMANDS, "dvc repro"), root, env)
    # A second model as a DVC experiment, trained only (no sample or evaluate).
    sh(["dvc", "exp", "run", "-S", f"train.lambda={SWEPT_LAMBDA}", "train"], root, env)
    return Lab(root, env)


def test_the_experiment_is_a_model_training_one_and_runs_say_what_they_trained(lab):
    assert lab.experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = lab.runs()
    experiment_run = next(r for r in runs.values() if "dvc.exp_name" in r.data.tags)
    assert set(runs) == {
        DEFAULT_RUN,
        f"small-mmd-l0.001-z12-s0 ({experiment_run.data.tags['dvc.exp_name']})",
    }
    for run in runs.values():
        assert run.info.status == "FINISHED"


def test_each_run_has_the_prepared_data_as_input_and_the_machines_load(lab):
    for run in lab.runs().values():
        (dataset_input,) = run.inputs.dataset_inputs
        assert dataset_input.dataset.name == "mnist"
        assert dataset_input.dataset.digest == run.data.tags["data.digest"]
        context = {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"]
        assert context == "train=3000 val=500 test=10000"  # tests/project.py TINY_PARAMS
        cpu = lab.client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
        assert cpu and all(0 <= m.value <= 100 for m in cpu)
        assert run.data.metrics["system/system_memory_usage_megabytes"] > 0


def test_evaluate_writes_a_summary_and_tags_the_decoder_version_with_its_scores(lab):
    run = lab.runs()[DEFAULT_RUN]
    metrics = json.loads((lab.root / "reports/metrics.json").read_text())
    note = run.data.tags["mlflow.note.content"]
    assert f"| sample_fcd | {metrics['sample_fcd']:.4g} |" in note
    assert f"get-artifact?path=sample%2Fsamples.png&run_uuid={run.info.run_id}" in note
    (version,) = lab.client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert float(version.tags["sample_fcd"]) == pytest.approx(metrics["sample_fcd"], rel=1e-5)
    assert float(version.tags["test_recon_mse"]) == pytest.approx(metrics["test_recon_mse"], rel=1e-5)
    swept = next(r for r in lab.runs().values() if r.info.run_id != run.info.run_id)
    (unscored,) = lab.client.search_model_versions(f"run_id = '{swept.info.run_id}'")
    assert "sample_fcd" not in unscored.tags and "mlflow.note.content" not in swept.data.tags

    result = sh(command_starting(COMMANDS, "python -m wae.tracking promote"), lab.root, lab.env)
    assert f"wae-decoder@champion -> version {version.version} " in result.stdout
    assert lab.client.get_model_version_by_alias("wae-decoder", "champion").run_id == run.info.run_id


# ---------------------------------------------------------------------- in a browser
@pytest.fixture(scope="module")
def ui(lab, tmp_path_factory: pytest.TempPathFactory):
    """The README's `mlflow ui`, on a free port."""
    port = free_port()
    command = command_starting(COMMANDS, "mlflow ui").replace("--port 5000", f"--port {port}")
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    service = start_service(command, lab.root, lab.env, f"http://{HOST}:{port}", "/health", log)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Chromium's profile and its singleton-socket folder go to the test's own folder: left in the
    # system's temporary folder, one `org.chromium.Chromium.*` folder stays behind per run.
    home = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1500,1100",
        f"--user-data-dir={home / 'profile'}",
    ):
        options.add_argument(argument)
    service = Service(CHROMEDRIVER, env={**os.environ, "TMPDIR": str(home)})
    driver = webdriver.Chrome(service=service, options=options)
    yield driver
    driver.quit()


def page_text(browser) -> str:
    return browser.find_element("tag name", "body").text


def wait_for(browser, *texts: str, timeout: float = 180) -> str:
    """The page's text once it shows all `texts` (the UI loads its data after the page)."""
    deadline = time.monotonic() + timeout
    while not all(t in (text := page_text(browser)) for t in texts):
        if time.monotonic() > deadline:
            missing = [t for t in texts if t not in text]
            raise AssertionError(f"{browser.current_url} never showed {missing}; it shows:\n{text[:3000]}")
        time.sleep(1)
    return text


@needs_browser
def test_the_runs_page_lists_the_runs_under_their_names_with_their_dataset(lab, ui, browser, tmp_path):
    url = sh(["python", "-m", "wae.tracking", "url", "--base", ui.url], lab.root, lab.env).stdout.strip()
    assert url == f"{ui.url}/#/experiments/{lab.experiment.experiment_id}?workflowType=machine_learning"
    browser.get(url)
    names = list(lab.runs())
    digest = lab.runs()[DEFAULT_RUN].data.tags["data.digest"]
    text = wait_for(browser, *names, f"mnist ({digest})")
    assert "Run Name" in text and "Dataset" in text and "2 matching runs" in text
    browser.save_screenshot(str(tmp_path / "runs.png"))


@needs_browser
def test_a_run_page_shows_its_dataset_and_its_description_with_the_sample_grid(lab, ui, browser, tmp_path):
    from selenium.webdriver.common.by import By

    run = lab.runs()[DEFAULT_RUN]
    experiment_id = lab.experiment.experiment_id
    browser.get(
        f"{ui.url}/#/experiments/{experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    )
    text = wait_for(browser, DEFAULT_RUN, "Datasets", "Description", "sample_fcd", "Show more")
    assert f"mnist ({run.data.tags['data.digest']})" in text
    assert "Scores" in text and "prior" in text
    browser.find_element(By.XPATH, "//*[contains(text(), 'Show more')]").click()  # the whole description
    grid = browser.find_element(By.CSS_SELECTOR, "img[src*='get-artifact'][src*='samples.png']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", grid)
    deadline = time.monotonic() + 60
    while not browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", grid):
        assert time.monotonic() < deadline, "the sample grid did not load"
        time.sleep(1)
    assert grid.size["width"] > 100, "the grid is shown, not a broken-image icon"
    browser.save_screenshot(str(tmp_path / "run.png"))
