"""Run a study (src/wae/studies.py) as DVC experiments, then report it from MLflow.

    python scripts/study.py list
    python scripts/study.py run regularisers --jobs 1    # make study STUDY=regularisers [JOBS=2]
    python scripts/study.py report regularisers          # make study-report STUDY=regularisers
    python scripts/study.py run lr --vary train.lr=0.001,0.002 --seeds 0,1 --set train.epochs=4

`run` finds each member's MLflow run by the digest of its params (`scores.params_digest`, tagged by
`evaluate`): members that have one are done. Members already queued or running in DVC's queue
are waited for, not queued again; the rest are queued (`dvc exp run --queue -S ...`), the queue is
started (`dvc queue start -j JOBS`) and waited for, and the report is written. Interrupted, the
queue keeps running in the background; `run` again waits for it and queues only what is missing.

`report` writes reports/studies/<name>/ (summary.md, summary.csv, members.csv, study.json, plots)
and logs it to the study's own MLflow run, of which the members' runs become children.
A study given with --vary is the same study only when given the same options again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from wae import study_report, tracking
from wae.config import ConfigWarning, params_from_dict
from wae.errors import WAEError
from wae.studies import STUDIES, Member, Study, adhoc, get, members

ROOT = Path.cwd()
REPORTS = ROOT / "reports" / "studies"
POLL_SECONDS = 20
ACTIVE = ("queued", "running")


def dvc(*args: str, capture: bool = True) -> str:
    """Run a DVC command in the workspace; a failure stops the study with DVC's message."""
    result = subprocess.run(["dvc", *args], cwd=ROOT, capture_output=capture, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip() if capture else ""
        raise WAEError(f"`dvc {' '.join(args)}` failed (exit {result.returncode}) {detail}".strip())
    return result.stdout if capture else ""


@dataclass(frozen=True)
class Experiment:
    """A DVC experiment, queued or run."""

    name: str
    state: str  # queued, running, success, failed, or stale: running in DVC's eyes, its process gone
    digest: str | None  # of the params its scores would stand for; None when they do not validate today
    baseline: str  # the commit it was queued on (a later commit leaves it there)


def experiments(baselines: Iterable[str] | None = None) -> list[Experiment]:
    """The experiments of every commit (None: about as slow as `dvc exp show --all-commits`, once per
    command), or of the given baseline commits (the polls while a study runs): a member keeps the commit
    it was queued on as its baseline, and plain `dvc exp show` lists only HEAD's."""
    revs = ["--all-commits"] if baselines is None else [f"--rev={rev}" for rev in sorted(baselines)]
    for attempt in range(6):
        try:
            shown = dvc("exp", "show", "--json", *revs)
            break
        except WAEError:
            # DVC fails now and then while a worker creates its temporary copy: look again.
            if attempt == 5:
                raise
            time.sleep(5)
    found = []
    for baseline in json.loads(shown or "[]"):
        for experiment in baseline.get("experiments") or []:
            executor = experiment.get("executor") or {}
            revision = experiment["revs"][0]
            data = (revision.get("data") or {}).get("params", {}).get("params.yaml", {})
            try:
                with warnings.catch_warnings():  # said once, when the study's members were built
                    warnings.simplefilter("ignore", ConfigWarning)
                    digest = params_from_dict(data.get("data")).scores_digest()
            except WAEError:
                digest = None  # an experiment of older params: not a member
            state = executor.get("state") or "success"
            pid = (executor.get("local") or {}).get("pid")
            if state == "running" and pid and not psutil.pid_exists(pid):
                state = "stale"  # a crash or a reboot: DVC would show it running for ever
            name = experiment.get("name") or revision["rev"][:7]
            found.append(Experiment(name, state, digest, baseline["rev"]))
    return found


def by_digest(found: list[Experiment]) -> dict[str, Experiment]:
    """The experiment of each digest; of a member queued more than once, the queued or running one."""
    chosen: dict[str, Experiment] = {}
    for experiment in found:
        if experiment.digest and (experiment.digest not in chosen or experiment.state in ACTIVE):
            chosen[experiment.digest] = experiment
    return chosen


def state_of(member: Member, chosen: dict[str, Experiment]) -> str:
    return chosen[member.digest].state if member.digest in chosen else ""


def free_name(member: Member, taken: set[str]) -> str:
    """The member's experiment name, or name-2, name-3, ... when a successful experiment has it (one
    that left no scored run, say in a store since deleted): DVC keeps that one."""
    name, n = member.name, 1
    while name in taken:
        n += 1
        name = f"{member.name}-{n}"
    return name


def scored_runs(experiment: str) -> dict[str, tracking.RunRecord]:
    """Finished runs that `evaluate` scored, by the digest of their params; the newest wins."""
    found: dict[str, tracking.RunRecord] = {}
    for run in tracking.search_runs(ROOT, experiment, "attributes.status = 'FINISHED'"):
        digest = run.tags.get("scores.params_digest")
        if digest and digest not in found:
            found[digest] = run
    return found


def override_args(member: Member) -> list[str]:
    """`-S key=value` per override, values as Hydra reads them back (lists in brackets)."""
    args = []
    for key, value in member.overrides.items():
        text = json.dumps(value) if isinstance(value, list | tuple | bool) else str(value)
        args += ["-S", f"{key}={text}"]
    return args


def start_queue(jobs: int) -> None:
    """Start DVC's queue with `jobs` workers; workers that already run are kept, not doubled."""
    dvc("queue", "start", "-j", str(jobs), capture=False)


def wait(study: Study, todo: list[Member], baselines: set[str], jobs: int) -> None:
    """Poll DVC's queue until no member of `todo` is queued or running; print progress as it moves.

    Members queued with none running, two polls in a row, mean that DVC's queue has no worker: a
    user stopped it (`dvc queue stop`), or its worker left with members queued (a read of a message
    that DVC's file-based broker was still writing ends it, now and then). The queue is started again,
    rather than waiting for ever."""
    digests = {m.digest for m in todo}
    last, idle_polls = None, 0
    while True:
        chosen = by_digest(experiments(baselines))
        states = [chosen[d].state if d in chosen else "" for d in digests]
        counts = {s: states.count(s) for s in (*ACTIVE, "success", "failed", "stale")}
        line = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        if line != last:
            print(f"study {study.name}: {line} ({time.strftime('%H:%M:%S')})")
            last = line
        if not counts["queued"] and not counts["running"]:
            return
        idle_polls = idle_polls + 1 if counts["queued"] and not counts["running"] else 0
        if idle_polls == 2:
            print(
                f"study {study.name}: members are queued and none runs: DVC's queue has no worker; starting it"
            )
            start_queue(jobs)
            idle_polls = 0
        time.sleep(POLL_SECONDS)


def run(study: Study, base: dict[str, Any], jobs: int) -> int:
    experiment = params_from_dict(base).mlflow.experiment_name
    grid = members(study, base)  # fails here, before any work, on a bad member
    found = experiments()
    # Read after DVC's states: a member whose process has ended ("stale" until DVC collects it, for some
    # seconds after a normal end too) has logged its scores by then, so only one a crash ended is queued
    # again. Also creates the store and experiment before parallel workers.
    done = scored_runs(experiment)
    # Where members are queued (HEAD, now) or were queued before: a commit during the wait changes neither.
    head = tracking.git_tags(ROOT).get("git.commit")
    baselines = {e.baseline for e in found} | ({head} if head else set())
    chosen = by_digest(found)
    pending = [m for m in grid if m.digest not in done and state_of(m, chosen) in ACTIVE]
    missing = [m for m in grid if m.digest not in done and m not in pending]
    for member in missing:
        if state_of(member, chosen) == "stale":  # mark it failed in DVC's queue, and run it again
            name = chosen[member.digest].name
            print(f"{name} was running when its process ended (a crash or a reboot): queued again")
            with contextlib.suppress(WAEError):  # tidying only
                dvc("queue", "kill", name)
    print(
        f"study {study.name}: {len(grid)} in all, {len(grid) - len(pending) - len(missing)} done, "
        f"{len(pending)} already in DVC's queue, {len(missing)} to queue"
    )
    if missing:
        # The data and the judge, once, in the workspace: queued members restore them from the run cache.
        dvc("repro", "classifier", capture=False)
        taken = {e.name for e in found if e.state == "success"}  # DVC refuses those names again
        for member in missing:
            # No --force: it would also rerun the stages that the run cache can restore.
            name = free_name(member, taken)
            dvc("exp", "run", "--queue", "-n", name, *override_args(member))
            taken.add(name)
            print(f"queued {name}: {' '.join(override_args(member))}")
    if missing or pending:
        if missing or any(state_of(m, chosen) == "queued" for m in pending):
            start_queue(jobs)
        try:
            wait(study, missing + pending, baselines, jobs)
        except KeyboardInterrupt:
            print(
                "\ninterrupted: the queue keeps running in the background (`dvc queue status`). The same "
                "command again waits for it, queues what is missing and reports; `dvc queue kill` stops it.",
                file=sys.stderr,
            )
            return 130
        if not any(e.state in ACTIVE for e in experiments(baselines)):
            dvc("queue", "stop", capture=False)  # the idle workers would otherwise stay
    return report(study, base, grid)


def report(study: Study, base: dict[str, Any], grid: list[Member] | None = None) -> int:
    """Write reports/studies/<name>/ from MLflow and log it to the study's run; 1 if members are missing."""
    experiment = params_from_dict(base).mlflow.experiment_name
    grid = grid if grid is not None else members(study, base)
    runs = scored_runs(experiment)
    if not any(m.digest in runs for m in grid):
        raise WAEError(
            f"no member of study {study.name} has a finished, scored MLflow run in {tracking.tracking_uri(ROOT)} "
            f"(experiment {experiment}); run the study first"
        )
    result = study_report.build(study, grid, {d: (r.run_id, r.metrics) for d, r in runs.items()})
    folder = REPORTS / study.name
    study_report.write(folder, result)
    parent = tracking.study_run(ROOT, experiment, study.name)
    children = {result.run_ids[m.digest]: m.name for m in result.found}
    elsewhere = tracking.adopt_members(parent, study.name, children)
    text = result.markdown
    if len(text) > 8000:  # MLflow keeps up to 8,000 characters in a tag
        text = text[:7900] + "\n\n(cut: the whole report is the artifact summary.md)\n"
    tags = {
        "mlflow.note.content": text,
        "study.members": f"{len(result.found)}/{len(grid)}",
        "study.vary": study.vary,
    }
    tracking.log_study(parent, study_report.study_metrics(result.summary), folder, tags)
    print(result.markdown)
    print(
        f"report: {folder} and MLflow run {parent} (study-{study.name}); {len(result.found)} of {len(grid)} members"
    )
    if elsewhere:
        print(
            f"note: {len(elsewhere)} member runs stay under another study's run (tagged study.{study.name})"
        )
    if result.missing:
        chosen = by_digest(experiments())
        for member in result.missing:
            why = {
                "failed": f"failed: `dvc queue logs {member.name}` says why",
                "stale": "its process ended unexpectedly",
            }.get(state_of(member, chosen), "not finished")
            print(f"missing {member.name} ({why}); `make study` runs what is missing", file=sys.stderr)
        return 1
    return 0


def parse_value(text: str) -> Any:
    """A command-line value as YAML reads it (1 -> int, 0.3 -> float, mmd -> str)."""
    return yaml.safe_load(text)


def build_study(args: argparse.Namespace) -> Study:
    if args.vary is None:
        if args.seeds or args.set or args.log_x:
            raise WAEError("--seeds, --set and --log-x define a study with --vary; a named study takes none")
        return get(args.study)
    key, sep, values = args.vary.partition("=")
    if not sep or not values:
        raise WAEError(f"--vary {args.vary!r}: expected KEY=V1,V2,... such as train.lambda=1,10")
    fixed = {}
    for item in args.set or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise WAEError(f"--set {item!r}: expected KEY=VALUE such as train.epochs=4")
        fixed[k] = parse_value(v)
    seeds = [parse_value(s) for s in args.seeds.split(",")] if args.seeds else None
    return adhoc(
        args.study, key, [parse_value(v) for v in values.split(",")], seeds or (0, 1, 2), fixed, args.log_x
    )


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, also in a log file
    parser = argparse.ArgumentParser(prog="scripts/study.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the named studies")
    for name in ("run", "report"):
        sub = commands.add_parser(name, help="queue, run and report" if name == "run" else "only the report")
        sub.add_argument("study", help=f"a named study ({', '.join(STUDIES)}) or, with --vary, a new name")
        sub.add_argument("--vary", help="KEY=V1,V2,...: a study of your own, varying one param")
        sub.add_argument("--seeds", help="with --vary: training seeds, comma-separated (default 0,1,2)")
        sub.add_argument("--set", action="append", metavar="KEY=VALUE", help="with --vary: a fixed override")
        sub.add_argument("--log-x", action="store_true", help="with --vary: plot against a log axis")
        if name == "run":
            sub.add_argument("--jobs", type=int, default=1, help="experiments at a time (dvc queue start -j)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for study in STUDIES.values():
            print(f"{study.name}: {study.description}")
        return 0
    # Ctrl-C interrupts the wait even when this process was started with SIGINT ignored (a background
    # job of a script, nohup): Python then installs no KeyboardInterrupt handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        study = build_study(args)
        base = yaml.safe_load((ROOT / "params.yaml").read_text())
        params_from_dict(base)  # the workspace's params themselves must be valid
        if args.command == "run":
            if args.jobs < 1:
                raise WAEError(f"--jobs {args.jobs}: expected a number of experiments >= 1")
            return run(study, base, args.jobs)
        return report(study, base)
    except WAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: `dvc queue status` shows what DVC still runs", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
