"""Configuration sweeps on Ray Tune: every trial an ordinary run, resumable, cancellable, on one
machine or a Ray cluster.

A sweep lives in ``<workspace>/sweeps/<id>/``: ``sweep.json`` (the spec, its state and one row per
trial: the configuration, the run it trains, its state and headline metric) and ``tune/`` (Ray
Tune's own experiment folder). Trial *i* always trains run ``<id>-t<i>``, so a sweep started again
after a crash or a cancel picks up where it was: finished trials are not run again, a trial that had
saved a checkpoint resumes from it, one that had not starts over.

Ray Tune runs the trials (one per ``cpus_per_trial`` CPUs or per GPU), and stops bad ones early
with ASHA when asked. The driver (:func:`run_sweep`) starts a local Ray with this machine's cores,
or joins the cluster at ``ray_address`` / ``RAY_ADDRESS`` (its nodes must see the workspace at the
same path); it alone writes ``sweep.json``, from what the trials' runs say. A cancel is a file in
the sweep folder that every trial watches: the running runs stop at their next step (state
``cancelled``, a checkpoint kept), trials not started yet do not start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitrine.core.atomic import atomic_write_json
from vitrine.core.errors import Cancelled, NotFound, VitrineError
from vitrine.core.ray_cluster import ray_init
from vitrine.core.workspace import Workspace, check_name
from vitrine.experiments.space import SearchSpace, parse_assignment
from vitrine.experiments.trainers import sweep_task

log = logging.getLogger("vitrine.sweep")

SWEEP_STATES = ("created", "running", "done", "cancelled", "failed")
TRIAL_STATES = ("pending", "running", "done", "stopped", "cancelled", "failed")
FINISHED_TRIALS = ("done", "stopped", "failed")  # never run again by a resume
CANCEL_FILE = "cancel"
STOPPED_NOTE = "stopped early by the sweep's scheduler (ASHA): its {metric} was behind the other trials'"
OBJECT_STORE_BYTES = 256 * 1024 * 1024  # trials pass no data through Ray's object store


# ------------------------------------------------------------------------------------- the spec
@dataclass
class SweepSpec:
    """What to sweep: a task, a dataset, a search space and how to run the trials."""

    task: str
    dataset: str  # a workspace dataset (classify) or an annotation file or folder (detect)
    space: SearchSpace = field(default_factory=SearchSpace)
    trial_minutes: float | None = None  # each trial's training budget (the trainer's max_minutes)
    early_stopping: bool = False  # ASHA on the task's per-epoch metric
    grace_epochs: int = 1  # epochs every trial gets before ASHA may stop it
    cpus_per_trial: int | None = None  # default: every CPU of the machine (one trial at a time)
    gpus_per_trial: float = 0.0
    name: str | None = None

    @classmethod
    def build(
        cls,
        task: str,
        dataset: str,
        *,
        grid: list[str] | dict | None = None,
        random: list[str] | dict | None = None,
        base: list[str] | dict | None = None,
        samples: int = 1,
        seed: int = 0,
        **options,
    ) -> SweepSpec:
        """A spec from command-line style ``KEY=VALUES`` lists or dicts, checked against the task's
        trainer config (every trial must be a valid config)."""
        t = sweep_task(task)
        if t.name == "detect":
            path = Path(dataset).expanduser()
            if not path.exists():
                raise NotFound(
                    f"detection dataset {path} not found",
                    hint="give a COCO file or folder, a YOLO data.yaml, a CVAT .xml or a VOC folder",
                )
            dataset = str(path.resolve())
        space = SearchSpace.build(t.config_cls(), _as_dict(base), _as_dict(grid), _as_dict(random), samples, seed)
        spec = cls(t.name, dataset, space, **options)
        if spec.trial_minutes is not None and not spec.trial_minutes > 0:
            raise VitrineError("trial minutes must be > 0")
        if spec.cpus_per_trial is not None and spec.cpus_per_trial < 1:
            raise VitrineError("cpus per trial must be 1 or more")
        if spec.gpus_per_trial < 0:
            raise VitrineError("gpus per trial must be 0 or more")
        if spec.name is not None:
            check_name(spec.name, "sweep name")
        return spec

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides) -> SweepSpec:
        """A spec from a YAML file: ``task``, ``dataset``, ``grid`` ({option: [values]}), ``random``
        ({option: "loguniform:1e-4:1e-2"}), ``base``, ``samples``, ``seed``, ``trial_minutes``,
        ``early_stopping``, ``grace_epochs``, ``cpus_per_trial``, ``gpus_per_trial``, ``name``.
        Keyword overrides that are not None win over the file."""
        import yaml

        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise NotFound(f"cannot read {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise VitrineError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        if not isinstance(doc, dict):
            raise VitrineError(f"{path}: a sweep file is a mapping (task:, dataset:, grid:, ...)")
        file_dataset = doc.get("dataset")
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("grid", "random", "base") and isinstance(doc.get(key), dict):
                value = {**doc[key], **_as_dict(value)}  # a command-line option replaces that option only
            doc[key] = value
        known = {"task", "dataset", "grid", "random", "base", "samples", "seed", "trial_minutes", "early_stopping",
                 "grace_epochs", "cpus_per_trial", "gpus_per_trial", "name"}  # fmt: skip
        unknown = sorted(set(doc) - known)
        if unknown:
            raise VitrineError(f"{path}: unknown key {', '.join(unknown)}", hint="keys: " + ", ".join(sorted(known)))
        for key in ("task", "dataset"):
            if not doc.get(key):
                raise VitrineError(f"{path}: no {key}", hint=f"add a line '{key}: ...'")
        dataset = Path(str(doc["dataset"])).expanduser()
        in_file = overrides.get("dataset") is None and file_dataset is not None
        if sweep_task(str(doc["task"])).name == "detect" and in_file and not dataset.is_absolute():
            dataset = path.parent / dataset  # a path in the file is relative to the file
        return cls.build(str(doc.pop("task")), str(dataset if doc.pop("dataset") else ""), **doc)

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "dataset": self.dataset,
            "space": self.space.to_dict(),
            "trial_minutes": self.trial_minutes,
            "early_stopping": self.early_stopping,
            "grace_epochs": self.grace_epochs,
            "cpus_per_trial": self.cpus_per_trial,
            "gpus_per_trial": self.gpus_per_trial,
            "name": self.name,
        }


def _as_dict(items) -> dict:
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out: dict = {}
    for text in items:
        key, value = parse_assignment(text)
        if key in out:
            raise VitrineError(f"option {key} is given twice", hint="list its values once: OPTION=A,B,C")
        out[key] = value
    return out


# ----------------------------------------------------------------------------------- the record
class Sweep:
    """One sweep folder: ``sweep.json`` read and written whole, atomically."""

    def __init__(self, directory: Path, record: dict):
        self.dir = Path(directory)
        self.record = record
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def trials(self) -> list[dict]:
        return self.record["trials"]

    @classmethod
    def create(cls, workspace: Workspace, spec: SweepSpec) -> Sweep:
        sweep_id = check_name(spec.name or f"{time.strftime('%Y%m%d-%H%M%S')}-sweep-{uuid.uuid4().hex[:4]}", "sweep id")
        directory = sweeps_dir(workspace) / sweep_id
        if (directory / "sweep.json").exists():
            raise VitrineError(f"sweep {sweep_id!r} already exists", hint="pick another --name, or --resume it")
        varied = spec.space.varied()
        trials = [
            {
                "index": i,
                "params": {k: config.get(k) for k in varied},
                "config": {**config, **({"max_minutes": spec.trial_minutes} if spec.trial_minutes else {})},
                "run_id": f"{sweep_id}-t{i:03d}"[:100],
                "state": "pending",
                "metric": None,
                "epoch": None,
                "error": None,
            }
            for i, config in enumerate(spec.space.trials())
        ]
        directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        sweep = cls(
            directory,
            {
                "id": sweep_id,
                "task": spec.task,
                "dataset": spec.dataset,
                "spec": spec.to_dict(),
                "primary": sweep_task(spec.task).primary,
                "state": "created",
                "trials": trials,
                "created_at": now,
                "updated_at": now,
                "attempts": 0,
            },
        )
        sweep.save()
        return sweep

    @classmethod
    def at(cls, directory: str | os.PathLike) -> Sweep:
        path = Path(directory) / "sweep.json"
        try:
            return cls(Path(directory), json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise NotFound(f"no sweep at {directory}") from None
        except (OSError, ValueError) as exc:
            raise VitrineError(f"cannot read {path}: {exc}") from None

    @classmethod
    def load(cls, workspace: Workspace, sweep_id: str) -> Sweep:
        directory = sweeps_dir(workspace) / check_name(sweep_id, "sweep id")
        if not (directory / "sweep.json").is_file():
            raise NotFound(f"no sweep {sweep_id!r}", hint="see the sweeps with `vitrine sweeps`")
        return cls.at(directory)

    def spec(self) -> SweepSpec:
        s = self.record["spec"]
        space = s["space"]
        return SweepSpec.build(
            s["task"], s["dataset"], grid=space["grid"], random=space["random"], base=space["base"],
            samples=space["samples"], seed=space["seed"], trial_minutes=s["trial_minutes"],
            early_stopping=s["early_stopping"], grace_epochs=s["grace_epochs"], cpus_per_trial=s["cpus_per_trial"],
            gpus_per_trial=s["gpus_per_trial"], name=s["name"],
        )  # fmt: skip

    def save(self) -> None:
        with self._lock:
            self.record["updated_at"] = time.time()
            atomic_write_json(self.dir / "sweep.json", self.record)

    def update(self, **fields) -> None:
        with self._lock:
            self.record.update(fields)
        self.save()

    # cancel: a file every trial watches, wherever it runs
    def cancel_requested(self) -> bool:
        return (self.dir / CANCEL_FILE).exists()

    def request_cancel(self) -> None:
        (self.dir / CANCEL_FILE).touch()

    def clear_cancel(self) -> None:
        (self.dir / CANCEL_FILE).unlink(missing_ok=True)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(TRIAL_STATES, 0)
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out


def sweeps_dir(workspace: Workspace) -> Path:
    return Path(workspace.root) / "sweeps"


def list_sweeps(workspace: Workspace) -> list[Sweep]:
    """Every sweep of the workspace, newest first (unreadable ones left out, logged)."""
    root = sweeps_dir(workspace)
    found = []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if (directory / "sweep.json").is_file():
            try:
                found.append(Sweep.at(directory))
            except VitrineError as exc:
                log.warning("%s", exc)
    return sorted(found, key=lambda s: s.record.get("created_at") or 0, reverse=True)


# ------------------------------------------------------------------------------------ the trials
def _read_run(workspace: Workspace, run_id: str) -> dict | None:
    try:
        return json.loads((workspace.run_dir(run_id) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _numbers(info: dict | None) -> dict:
    return {k: float(v) for k, v in (info or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def primary_metric(task: str, record: dict | None) -> float | None:
    """A finished trial's headline metric, from its run record."""
    metrics = (record or {}).get("metrics") or {}
    key = sweep_task(task).primary
    for holder in (metrics.get("test"), metrics.get("all"), metrics.get("val"), metrics):
        if isinstance(holder, dict) and isinstance(holder.get(key), (int, float)):
            return float(holder[key])
    return None


def _trial(params: dict, *, sweep_dir: str, workspace_root: str) -> None:
    """One Ray Tune trial: train (or resume, or skip) run ``<sweep>-t<i>``; report each epoch's
    metrics to Tune (ASHA reads them) and a final result marked ``finished``."""
    from ray import tune

    sweep = Sweep.at(sweep_dir)
    trial = sweep.trials[int(params["trial"])]
    task = sweep_task(sweep.record["task"])
    last: dict = {}

    import ray

    node = ray.get_runtime_context().get_node_id()

    def report(**extra) -> None:
        tune.report({**last, **extra, "node_id": node})

    if sweep.cancel_requested():
        report(finished=1.0, cancelled=1.0)
        return
    ws = Workspace(workspace_root)
    run_id = trial["run_id"]
    record = _read_run(ws, run_id)
    if record and record.get("state") == "done":
        report(finished=1.0, **{task.primary: primary_metric(task.name, record) or 0.0})
        return
    run_dir = ws.run_dir(run_id)
    resume = bool(record) and (run_dir / "checkpoints" / "last.pt").is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # this sweep's own trial, stopped before its first checkpoint: start over
    config = dict(trial["config"])
    if config.get("threads") is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        config["threads"] = int(os.environ["OMP_NUM_THREADS"])  # Ray sets it to the trial's CPUs

    cancel = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            if sweep.cancel_requested():
                cancel.set()
                return

    threading.Thread(target=watch, name="vitrine-sweep-cancel", daemon=True).start()

    def progress(stage: str, done_: int, total: int, info: dict | None = None) -> None:
        if stage == "epoch":
            last.update(_numbers(info))
            try:
                report()
            except SystemExit:  # Tune ends a trial its scheduler stops by exiting the thread at report()
                raise Cancelled(STOPPED_NOTE.format(metric=task.epoch_metric)) from None

    try:
        task.train(ws, sweep.record["dataset"], None if resume else config, progress=progress, cancel=cancel,
                   run_id=run_id, resume=resume)  # fmt: skip
    except Cancelled:
        report(finished=1.0, cancelled=1.0)
        return
    except Exception as exc:  # noqa: BLE001 - the run records it as failed; the sweep goes on
        log.warning("trial %s failed: %s: %s", run_id, type(exc).__name__, exc)
        report(finished=1.0, failed=1.0)
        return
    finally:
        done.set()
    report(finished=1.0, **{task.primary: primary_metric(task.name, _read_run(ws, run_id)) or 0.0})


# ------------------------------------------------------------------------------------ the driver
def _trial_state(task: str, record: dict | None, stopped: bool) -> tuple[str, str | None]:
    if record is None:
        return "pending", None
    state = record.get("state")
    if state == "done":
        return "done", None
    if state == "failed":
        return "failed", record.get("error")
    if stopped:
        return "stopped", STOPPED_NOTE.format(metric=sweep_task(task).epoch_metric)
    if state == "cancelled":
        return "cancelled", record.get("error")
    return ("running" if state in ("running", "created") else "pending"), None


def reconcile(workspace: Workspace, sweep: Sweep, stopped: set[int] = frozenset()) -> None:
    """Bring every trial row up to date with its run (and mark the runs ASHA stopped)."""
    for trial in sweep.trials:
        if trial["state"] in FINISHED_TRIALS:
            continue
        record = _read_run(workspace, trial["run_id"])
        is_stopped = trial["index"] in stopped
        if is_stopped and record is not None and record.get("state") != "done":
            from vitrine.runs import Run

            note = STOPPED_NOTE.format(metric=sweep_task(sweep.record["task"]).epoch_metric)
            Run.load(workspace, trial["run_id"]).update(state="cancelled", error=note, finished_at=time.time())
            record = _read_run(workspace, trial["run_id"])
        state, error = _trial_state(sweep.record["task"], record, is_stopped)
        progress = (record or {}).get("progress") or {}
        trial.update(
            state=state,
            error=error,
            epoch=progress.get("epoch"),
            epochs=progress.get("epochs"),
            metric=primary_metric(sweep.record["task"], record) if state == "done" else None,
        )
    sweep.save()


def _ray_init(address: str | None, cpus: int | None) -> bool:
    """Start a local Ray (or join a cluster); True when this call started it (and must stop it)."""
    return ray_init(address, cpus, object_store_bytes=OBJECT_STORE_BYTES)


def run_sweep(
    workspace: Workspace | str | os.PathLike,
    sweep: Sweep,
    *,
    progress=None,
    cancel: threading.Event | None = None,
    ray_address: str | None = None,
    poll_seconds: float = 2.0,
) -> Sweep:
    """Run the sweep's unfinished trials on Ray Tune and return it when all have ended.

    ``progress(sweep)`` is called every ``poll_seconds`` with the sweep brought up to date;
    setting ``cancel`` cancels the sweep (running trials stop at their next step). Calling it again
    on a sweep that was cancelled or interrupted resumes it.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's tables would go to our stdout (CLI --json)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # a trial cancelled before its first epoch
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    spec = sweep.record["spec"]
    task = sweep_task(sweep.record["task"])
    sweep.clear_cancel()  # running it again means: go on
    reconcile(ws, sweep)
    pending = [t["index"] for t in sweep.trials if t["state"] not in FINISHED_TRIALS]
    if not pending:
        sweep.update(state="done", finished_at=time.time())
        return sweep
    attempt = int(sweep.record.get("attempts") or 0) + 1
    sweep.update(
        state="running", started_at=sweep.record.get("started_at") or time.time(), attempts=attempt, error=None
    )

    started_ray = False
    stop_monitor = threading.Event()

    def monitor() -> None:
        while not stop_monitor.wait(poll_seconds):
            if cancel is not None and cancel.is_set() and not sweep.cancel_requested():
                sweep.request_cancel()
            with contextlib.suppress(Exception):  # a monitor hiccup must not end the sweep
                reconcile(ws, sweep)
                if progress is not None:
                    progress(sweep)

    watcher = threading.Thread(target=monitor, name="vitrine-sweep-monitor", daemon=True)
    try:
        started_ray = _ray_init(ray_address, None)
        import ray

        cpus = spec.get("cpus_per_trial") or max(1, int(ray.cluster_resources().get("CPU", 1)))
        resources = {"cpu": cpus, "gpu": float(spec.get("gpus_per_trial") or 0)}
        epochs = max(int(t["config"].get("epochs") or 1) for t in sweep.trials)
        scheduler = (
            ASHAScheduler(
                metric=task.epoch_metric,
                mode=task.epoch_mode,
                time_attr="training_iteration",
                max_t=epochs + 1,
                grace_period=max(1, int(spec.get("grace_epochs") or 1)),
                reduction_factor=2,
            )
            if spec.get("early_stopping")
            else None
        )
        trainable = tune.with_parameters(_trial, sweep_dir=str(sweep.dir.resolve()), workspace_root=str(ws.root))
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"trial": tune.grid_search(pending)},
            tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=False),
            run_config=tune.RunConfig(
                storage_path=str((sweep.dir / "tune").resolve()),
                name=f"attempt-{attempt}",
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        watcher.start()
        results = tuner.fit()
        stopped = set()
        crashed: dict[int, str] = {}
        for result in results:
            index = int((result.config or {}).get("trial", -1))
            metrics = result.metrics or {}
            if index < 0:
                continue
            if metrics.get("node_id"):
                sweep.trials[index]["node"] = metrics["node_id"]  # which Ray node trained it
            if not metrics.get("finished") and result.error is None:
                stopped.add(index)  # ended without finishing and without an error: the scheduler stopped it
            elif not metrics.get("finished"):  # Ray lost it (a worker or node died): a resume runs it again
                crashed[index] = f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[0][:300]}"
        reconcile(ws, sweep, stopped)
        for index, message in crashed.items():
            if sweep.trials[index]["state"] not in FINISHED_TRIALS:
                sweep.trials[index]["error"] = message
    except VitrineError as exc:
        sweep.update(state="failed", error=exc.message, finished_at=time.time())
        raise
    except Exception as exc:  # Ray or Tune gave up: the sweep says so (a resume may go on)
        sweep.update(state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time())
        raise
    except KeyboardInterrupt:
        sweep.request_cancel()
        reconcile(ws, sweep)
        sweep.update(state="cancelled", finished_at=time.time())
        raise
    finally:
        stop_monitor.set()
        if watcher.is_alive():
            watcher.join(timeout=poll_seconds + 5)
        if started_ray:
            import ray

            ray.shutdown()
    cancelled = sweep.cancel_requested() or (cancel is not None and cancel.is_set())
    unfinished = [t for t in sweep.trials if t["state"] not in FINISHED_TRIALS]
    state = ("cancelled" if cancelled else "failed") if unfinished else "done"
    reason = None
    if state == "failed":  # never "done" with trials that did not run: say which and why
        first = next((t["error"] for t in unfinished if t.get("error")), "Ray ended them without a result")
        reason = f"{len(unfinished)} trial(s) did not run to the end ({first}); resume the sweep to run them again"
    sweep.update(state=state, error=reason, finished_at=time.time())
    if progress is not None:
        progress(sweep)
    if state == "cancelled":
        raise Cancelled(f"sweep {sweep.id} cancelled: {len(unfinished)} trial(s) not finished; resume it to go on")
    if state == "failed":
        raise VitrineError(f"sweep {sweep.id}: {reason}", hint=f"see {sweep.dir / 'tune'} for Ray's own logs")
    return sweep


def best_trial(sweep: Sweep) -> dict | None:
    """The finished trial with the best headline metric (higher is better for every primary metric)."""
    done = [t for t in sweep.trials if t["state"] == "done" and isinstance(t.get("metric"), (int, float))]
    return max(done, key=lambda t: t["metric"]) if done else None


def describe(sweep: Sweep) -> dict[str, Any]:
    """The sweep as plain JSON for the CLI and the API."""
    return {**sweep.record, "counts": sweep.counts(), "best": best_trial(sweep)}
