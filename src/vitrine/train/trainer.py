"""The training loop every trainer shares; the tasks (``classification/``, ``detection/``) fill in
its hooks.

:class:`Trainer` holds what a fine-tuning and a detection run do alike: the cancel check, the time
budget (which keeps room for the validation that follows), the throttled ``run.json`` record with
its progress payload and ETA, seeding and the RNG state, ``last.pt`` / ``best.pt`` through a
:class:`~vitrine.runs.checkpoint.CheckpointPolicy`, resume (model, optimizer, scaler, RNG state,
counters, history) and the epoch loop with early stopping. A task says how to build its model
and data (:meth:`Trainer.setup`), what one step does (:meth:`Trainer.train_step`), how to
validate and evaluate, and what its records and checkpoints add.

Also here, because both tasks use them: the learning-rate schedule (:func:`lr_factor`), the
configuration of a resumed run (:func:`resumed_config`), the device choice and the RNG helpers.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Iterable

import numpy as np
import torch

from vitrine.core.errors import Cancelled, VitrineError
from vitrine.runs import Run
from vitrine.runs.checkpoint import CheckpointPolicy, load_checkpoint

CHECKPOINT_FORMAT = 1
MIN_LR_RATIO = 0.01  # cosine and one-cycle schedules end at 1 % of the peak learning rate
VAL_RESERVE_MARGIN = 1.5  # the time budget keeps 1.5x the last validation's time for the final one
RECORD_INTERVAL = 2.0  # seconds between two run.json writes during training (epoch ends: always)
TIME_BUDGET = "time budget"
EARLY_STOPPING = "early stopping"


# ------------------------------------------------------------------------------------------------
# schedule, resume, device, randomness


def lr_factor(schedule: str, progress: float, warmup: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``progress`` (0..1 of the run); ``warmup`` is the
    fraction of the run spent warming up linearly (one-cycle: 0.3 when not given)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle" and warmup <= 0:
        warmup = 0.3
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    p = (progress - warmup) / (1 - warmup) if warmup < 1 else 1.0
    if schedule in ("cosine", "onecycle"):
        return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * p))
    if schedule == "step":
        return 0.1 ** min(int(p * 3), 2)
    return 1.0


def resumed_config(run: Run, config, config_cls, allowed: tuple[str, ...]):
    """The configuration a resumed run continues with, and its ``last.pt`` state: the saved
    configuration, with only the ``allowed`` fields (epochs, time budget, threads, ...) taken from
    ``config`` (a config object: those fields; a dict: an error for any other key). Refuses a run
    with no checkpoint or one that already ran all its epochs."""
    last = run.checkpoints_dir / "last.pt"
    if not last.is_file():
        raise VitrineError(
            f"run {run.id!r} has no checkpoint to resume from (it stopped before its first save)",
            hint="start it again as a new run",
        )
    state = load_checkpoint(last)
    saved = dict(state.get("config") or run.record.get("config") or {})
    if isinstance(config, config_cls):
        overrides = {k: getattr(config, k) for k in allowed}
    else:
        overrides = dict(config or {})
        refused = sorted(set(overrides) - set(allowed))
        if refused:
            raise VitrineError(
                f"cannot change {', '.join(refused)} when resuming",
                hint=f"a resumed run can change: {', '.join(allowed)}",
            )
    cfg = config_cls.from_dict({**saved, **overrides})
    if run.record.get("state") == "done" and int(state["epoch"]) >= cfg.epochs:
        raise VitrineError(
            f"run {run.id!r} is finished ({state['epoch']} of {cfg.epochs} epochs)",
            hint="give more epochs (--epochs) to train it further",
        )
    return cfg, state


def config_from(config, config_cls):
    """A run's configuration: the defaults (None), a dict of options, or the config object itself."""
    if config is None:
        return config_cls()
    if isinstance(config, dict):
        return config_cls.from_dict(config)
    return config


def load_resumable(workspace, run_id: str | None, kinds, what: str) -> Run:
    """The run ``run_id`` to resume, refused when no id is given or the run is of another kind."""
    if not run_id:
        raise VitrineError("resuming needs the run id")
    run = Run.load(workspace, run_id)
    if run.kind not in kinds:
        raise VitrineError(f"run {run_id!r} is a {run.kind} run, not a {what} run")
    return run


def refuse_existing(workspace, run_id: str | None) -> None:
    """Refuse a new run's id that an existing run has (before anything is built for it)."""
    if run_id and (workspace.run_dir(run_id) / "run.json").exists():
        raise VitrineError(f"run {run_id!r} already exists", hint="pick another name, or resume it")


def select_device(name: str | None) -> torch.device:
    """The device asked for (refused when unknown, or CUDA without a GPU), else CUDA when present."""
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError as e:
            raise VitrineError(f"unknown device {name!r}: {e}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise VitrineError("device cuda asked for, but no CUDA GPU is available", hint="drop --device")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rng_state() -> dict:
    """Python's, NumPy's and torch's (and CUDA's) random states, as a checkpoint keeps them."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (parts that cannot be restored are left as they are)."""
    with contextlib.suppress(Exception):
        random.setstate(_to_tuple(state["python"]))
    with contextlib.suppress(Exception):
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    with contextlib.suppress(Exception):
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_tuple(x):
    return tuple(_to_tuple(i) for i in x) if isinstance(x, list | tuple) else x


# ------------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """One training run's loop. Subclasses set the class attributes and implement the hooks:

    - :meth:`setup` builds the data, model and optimizer, sets ``steps_per_epoch`` and
      ``total_steps`` (and calls :meth:`begin` first, :meth:`restore` last when resuming);
    - :meth:`batches` lists an epoch's batches, :meth:`begin_epoch` starts one, :meth:`train_step`
      trains on a batch (returns ``None`` when it had nothing to train on);
    - :meth:`validate` returns the validation's metrics (the policy's ``monitor`` among them),
      :meth:`epoch_entry` and :meth:`epoch_scalars` what an epoch adds to the history and to
      TensorBoard; :meth:`metrics` the run's metrics so far;
    - :meth:`checkpoint_header` what every checkpoint of the task carries, :meth:`check_resume`
      refuses a checkpoint of other data.
    """

    what = "training"  # in the cancel message
    completed = "completed"  # metrics["stopped"] when every epoch ran
    best_key = "best_value"  # the checkpoint field (and epoch-progress field) holding the best value
    policy = CheckpointPolicy("val_loss", "min")

    def __init__(self, run: Run, dataset, cfg, progress, cancel):
        self.run, self.dataset, self.cfg = run, dataset, cfg
        self._progress = progress
        self.cancel = cancel or threading.Event()
        self.writer = None
        self._last_record = 0.0
        self._threads_before = torch.get_num_threads()
        self.session_start = time.perf_counter()
        self.session_step0 = 0
        self.session_train_seconds = 0.0
        self.session_images = 0
        self.seconds_before = 0.0
        self.train_finished_seconds: float | None = None  # set when training ends: evaluation is not training
        self.last_val_seconds: float | None = None

    # -- hooks --------------------------------------------------------------------------------
    def setup(self, resume_state: dict | None, prebuilt=None) -> None:
        raise NotImplementedError

    def batches(self, epoch: int) -> list:
        """The (deterministic) batches of ``epoch``."""
        raise NotImplementedError

    def begin_epoch(self) -> None:
        """Before the (rest of the) epoch's steps: reset the epoch's sums, set training mode."""

    def run_batches(self, batches: list) -> Iterable:
        """The batches as :meth:`train_step` takes them (a data loader over them, or themselves)."""
        return batches

    def train_step(self, batch) -> dict | None:
        """Train on one batch; returns ``{"n": images, "info": {...progress}, "scalars": {...}}``
        (TensorBoard tags to values), or None when no image of the batch could be trained on."""
        raise NotImplementedError

    def validate(self) -> dict:
        raise NotImplementedError

    def val_size(self) -> int:
        """How many images a validation pass sees (to estimate its time before the first)."""
        raise NotImplementedError

    def epoch_entry(self, val: dict) -> dict:
        """The epoch's training and validation numbers in its history entry."""
        return dict(val)

    def epoch_scalars(self, entry: dict, val: dict) -> dict:
        """TensorBoard tags to values at the end of an epoch."""
        return {}

    def metrics(self) -> dict:
        raise NotImplementedError

    def checkpoint_header(self) -> dict:
        """What both checkpoints of the task carry besides the model (config, classes, ...)."""
        raise NotImplementedError

    def last_state(self) -> dict:
        """What ``last.pt`` of the task adds (the schedule, ...)."""
        return {}

    def check_resume(self, state: dict) -> None:
        """Refuse a checkpoint that was written for other data."""

    def restore_state(self, state: dict) -> None:
        """What :meth:`last_state` added, read back."""

    # -- helpers ------------------------------------------------------------------------------
    def progress(self, stage: str, done: int, total: int, info: dict | None = None) -> None:
        if self._progress is not None:
            self._progress(stage, done, total, info or {})

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"{self.what} cancelled; resume with run id {self.run.id}")

    def _train_seconds(self) -> float:
        """Training time so far (validation passes included, the final evaluation not)."""
        if self.train_finished_seconds is not None:
            return self.train_finished_seconds
        return self.seconds_before + (time.perf_counter() - self.session_start)

    def open_writer(self, resumed: bool) -> None:
        """TensorBoard events under the run's ``tb/`` (a resumed run drops what followed its
        checkpoint, so its curves go on where it stopped)."""
        from torch.utils.tensorboard import SummaryWriter

        self.run.tensorboard_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.run.tensorboard_dir), purge_step=self.step + 1 if resumed else None)

    def finish_training(self) -> None:
        """Stop the training clock: what follows (the final evaluation) is not training time."""
        self.train_finished_seconds = self._train_seconds()

    def _progress_fraction(self) -> float:
        """How far the run is: the fraction of steps done, or of the time budget when further."""
        frac = self.step / max(1, self.total_steps)
        if self.cfg.max_minutes:
            frac = max(frac, self._train_seconds() / (60 * self.cfg.max_minutes))
        return frac

    def _log_scalar(self, tag: str, value, step: int) -> None:
        if self.writer is not None and isinstance(value, int | float) and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def begin(self, seed: int, threads: int | None, device: str | None, fresh: bool) -> None:
        """First of a setup: seed (a fresh run not seeded before), the device and CPU threads."""
        if fresh:
            seed_everything(seed)
        self.device = select_device(device)
        self._threads_before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        self.epoch = 0  # completed epochs
        self.step = 0
        self.step_in_epoch = 0  # batches done in the current (incomplete) epoch
        self.best = self.policy.initial
        self.best_epoch = None
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.seconds_before = 0.0
        self.images_trained = 0

    # -- the time budget ----------------------------------------------------------------------
    def _expected_val_seconds(self) -> float:
        """How long a validation pass takes: the last one measured, or before the first, an estimate
        from the training speed (a forward pass costs about a third of a training step), so that the
        time budget keeps room for it and the first cut does not overrun."""
        if self.last_val_seconds is not None:
            return self.last_val_seconds
        per_image = self.session_train_seconds / self.session_images if self.session_images else 0.0
        return self.val_size() * per_image / 3

    def _out_of_time(self) -> bool:
        if not self.cfg.max_minutes:
            return False
        # room for the last validation, with a margin: on a shared machine one pass can take
        # longer than the one before
        return self._train_seconds() + VAL_RESERVE_MARGIN * self._expected_val_seconds() >= 60 * self.cfg.max_minutes

    # -- records ------------------------------------------------------------------------------
    def _eta(self) -> float | None:
        done = self.step - self.session_step0
        if done <= 0:
            return None
        per_step = self.session_train_seconds / done
        remaining_steps = self.total_steps - self.step
        remaining_epochs = self.cfg.epochs - self.epoch
        eta = remaining_steps * per_step + remaining_epochs * self._expected_val_seconds()
        if self.cfg.max_minutes:
            eta = min(eta, max(0.0, 60 * self.cfg.max_minutes - self._train_seconds()))
        return eta

    def _run_progress(self, stage: str) -> dict:
        """The progress payload of run.json and of the progress callback."""
        eta = self._eta()
        return {
            "stage": stage,
            "epoch": self.epoch + (1 if self.step_in_epoch else 0),
            "epochs": self.cfg.epochs,
            "step": self.step,
            "steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "elapsed_seconds": round(self._train_seconds(), 1),
            "eta_seconds": None if eta is None else round(eta, 1),
        }

    def record(self, stage: str, force: bool = False, **fields) -> None:
        """Write progress and metrics to run.json: at most every ``RECORD_INTERVAL`` seconds,
        unless ``force``."""
        now = time.monotonic()
        if not force and now - self._last_record < RECORD_INTERVAL:
            return
        self._last_record = now
        self.run.update(progress=self._run_progress(stage), metrics=self.metrics(), **fields)

    def cancelled_fields(self, exc: BaseException) -> dict:
        """What a cancelled run records (for :func:`vitrine.runs.lifecycle.run_lifecycle`): last.pt
        is saved first when a step was trained, then the progress and metrics so far."""
        if hasattr(self, "optimizer") and getattr(self, "step", 0) > 0:
            with contextlib.suppress(Exception):
                self.save_last()
        if not hasattr(self, "total_steps"):  # setup did not finish
            return {"progress": {"stage": "cancelled"}, "metrics": self.run.record.get("metrics", {})}
        return {"progress": self._run_progress("cancelled"), "metrics": self.metrics()}

    # -- checkpoints --------------------------------------------------------------------------
    def _header(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            **self.checkpoint_header(),
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "torch": str(torch.__version__),
        }

    def save_last(self) -> None:
        scaler = getattr(self, "scaler", None)
        state = {
            **self._header(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.last_state(),
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
            self.best_key: self.policy.stored(self.best),
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "train_seconds": self._train_seconds(),
            "images_trained": self.images_trained,
            "last_val_seconds": self.last_val_seconds,
            "rng": rng_state(),
        }
        self.run.save_checkpoint("last.pt", state)

    def save_best(self, val: dict) -> None:
        state = {**self._header(), "model": self.model.state_dict(), "val": val}
        self.run.save_checkpoint("best.pt", state)

    def restore(self, state: dict) -> None:
        """Continue from ``last.pt``: weights, optimizer, scaler, counters, best, history, RNG."""
        self.check_resume(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        scaler = getattr(self, "scaler", None)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        self.best = self.policy.loaded(state.get(self.best_key))
        self.best_epoch = state.get("best_epoch")
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.history = list(state.get("history") or [])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self.images_trained = int(state.get("images_trained", 0))
        self.last_val_seconds = state.get("last_val_seconds")
        self.restore_state(state)
        if self.step_in_epoch >= self.steps_per_epoch:  # defensive: treat as a completed epoch
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        set_rng_state(state.get("rng") or {})

    def _keep_best(self, val: dict, epoch: int, partial: bool) -> bool:
        """Ask the policy whether this validation is the best; save best.pt when it is. Counts the
        epochs without improvement (early stopping). Returns whether it improved."""
        value = self.policy.value(val)
        improved = self.policy.is_better(value, self.best)
        if self.policy.should_save(value, self.best, first=self.best_epoch is None):
            self.best = self.policy.best_after(value, self.best, first=self.best_epoch is None)
            self.best_epoch = epoch
            self.save_best(val)
        if improved:
            self.bad_epochs = 0
        elif not partial:
            self.bad_epochs += 1
        return improved

    # -- the loop -----------------------------------------------------------------------------
    def train(self) -> str:
        """Train until the last epoch, early stopping or the time budget; returns why it stopped."""
        cfg = self.cfg
        self.session_start = time.perf_counter()
        self.session_step0 = self.step
        self.session_train_seconds = 0.0
        self.session_images = 0
        stop = self.completed
        while self.epoch < cfg.epochs:
            self._check_cancel()
            if self._out_of_time():
                stop = TIME_BUDGET
                break
            self.begin_epoch()
            out_of_time = False
            step_started = time.perf_counter()
            for batch in self.run_batches(self.batches(self.epoch)[self.step_in_epoch :]):
                out = self.train_step(batch)
                self.step += 1
                self.step_in_epoch += 1
                if out is None:
                    continue
                n = out["n"]
                self.images_trained += n
                self.session_images += n
                now = time.perf_counter()
                self.session_train_seconds += now - step_started
                step_started = now
                if self.step % cfg.log_every == 0:
                    for tag, value in out.get("scalars", {}).items():
                        self._log_scalar(tag, value, self.step)
                info = self._run_progress("train")
                info.update(step_in_epoch=self.step_in_epoch, **out.get("info", {}))
                info["images_per_second"] = self.session_images / max(self.session_train_seconds, 1e-9)
                self.progress("train", self.step, self.total_steps, info)
                self.record("train")
                if self.cancel.is_set():
                    self.save_last()
                    self._check_cancel()
                if self._out_of_time():
                    out_of_time = True
                    break
            # the budget ran out on the epoch's last step: a full epoch
            partial = out_of_time and self.step_in_epoch < self.steps_per_epoch
            self.record("validate", force=True)
            val = self.validate()
            if not partial:
                self.epoch += 1
                self.step_in_epoch = 0
            entry = {
                "epoch": self.epoch if not partial else self.epoch + 1,
                "partial": partial,
                "step": self.step,
                **self.epoch_entry(val),
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(self._train_seconds(), 2),
            }
            self.history.append(entry)
            for tag, value in self.epoch_scalars(entry, val).items():
                self._log_scalar(tag, value, self.step)
            improved = self._keep_best(val, entry["epoch"], partial)
            self.save_last()
            if self.writer is not None:
                self.writer.flush()
            self.record("train", force=True)
            info = {
                **self._run_progress("epoch"),
                **entry,
                "improved": improved,
                self.best_key: self.policy.stored(self.best),
            }
            self.progress("epoch", entry["epoch"], cfg.epochs, info)
            self._check_cancel()
            if out_of_time:
                stop = TIME_BUDGET
                break
            patience = getattr(cfg, "early_stopping_patience", None)
            if patience and self.bad_epochs >= patience and self.epoch < cfg.epochs:
                stop = EARLY_STOPPING
                break
        return stop

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        with contextlib.suppress(Exception):
            torch.set_num_threads(self._threads_before)


__all__ = [
    "CHECKPOINT_FORMAT",
    "MIN_LR_RATIO",
    "RECORD_INTERVAL",
    "Trainer",
    "config_from",
    "load_resumable",
    "lr_factor",
    "refuse_existing",
    "resumed_config",
    "rng_state",
    "seed_everything",
    "select_device",
    "set_rng_state",
]
