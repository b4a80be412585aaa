"""Fine-tuning an image classifier end to end with PyTorch.

:func:`train_finetune` trains a backbone from :mod:`vitrine.models.classifiers.backbones` (EfficientNet-Lite0
with its packaged ImageNet weights by default) on a dataset's train split, validates every epoch,
and evaluates the best checkpoint on the test split (val when there is none). A run folder gets:

    run.json                  state, progress (epoch, step, ETA), metrics, per-epoch history
    checkpoints/last.pt       every epoch, on cancel and on the time budget: resumable
    checkpoints/best.pt       the weights with the lowest validation loss (what predictions use)
    tb/                       TensorBoard scalars: train/loss, train/acc, lr per step;
                              val/loss, val/acc, train/epoch_loss, train/epoch_acc, epoch per epoch
    metrics.json, per_class.csv/.json, confusion.csv/.svg     the evaluation

Checkpoints are written atomically (temporary file, fsync, rename), so a crash or a cancel
never leaves a half-written ``last.pt``: the previous one stays loadable. ``resume=True``
continues from ``last.pt``: epoch and step counters, optimizer, schedule, RNG states, the
early-stopping count and the TensorBoard curves go on where they stopped (mid-epoch included).

The schedule is computed from the training progress (the fraction of steps done, or of the
time budget used when ``max_minutes`` is set and that is further along), so a run stopped by its
time budget has annealed its learning rate like one that ran all its epochs.

The loop, the time budget, the records, checkpoints and resume are the shared
:class:`vitrine.train.trainer.Trainer`'s; this module adds what a classifier needs (the backbone,
its optimizer and mixed precision, the data loaders, the loss, the evaluation). The options are
:mod:`vitrine.train.classification.config`'s, the images :mod:`vitrine.train.classification.data`'s.

Small datasets are decoded once into memory (``cache_mb``; images larger than needed are
downscaled first), so the network, not image decoding, sets the pace. Images that cannot be read
are skipped with a warning and listed in ``run.json`` (``metrics.skipped``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time

import numpy as np
import torch
from torch import nn

from vitrine.core.errors import VitrineError
from vitrine.predict.classifier import FinetuneClassifier
from vitrine.runs import Run
from vitrine.runs.checkpoint import CheckpointPolicy, load_checkpoint
from vitrine.runs.lifecycle import run_lifecycle
from vitrine.train.classification.config import KIND, RESUME_OVERRIDES, FinetuneConfig, balanced_class_weights
from vitrine.train.classification.data import ImageStore, SplitDataset, collate, prepare_splits
from vitrine.train.classification.embeddings import resolve
from vitrine.train.trainer import (
    Trainer,
    config_from,
    load_resumable,
    lr_factor,
    refuse_existing,
    resumed_config,
    seed_everything,
)

log = logging.getLogger("vitrine.train.classification.finetune")


class FinetuneTrainer(Trainer):
    """Fine-tunes a classifier: the hooks of :class:`~vitrine.train.trainer.Trainer` for it.
    ``best.pt`` holds the weights with the lowest validation loss."""

    what = "fine-tuning"
    completed = "completed"
    best_key = "best_val_loss"
    policy = CheckpointPolicy("val_loss", "min", min_delta=1e-6)

    def __init__(self, run: Run, dataset, cfg: FinetuneConfig, progress, cancel):
        super().__init__(run, dataset, cfg, progress, cancel)
        self.classes = list(dataset.classes)
        self.skipped: dict[int, str] = {}

    # -- data ---------------------------------------------------------------------------------
    def _note_skipped(self, bad) -> None:
        for i, why in bad:
            if i not in self.skipped:
                self.skipped[i] = why or "unreadable"
                log.warning("skipping unreadable image %s: %s", self.splits.rel[i], self.skipped[i])

    def _loader(self, indexes: list[int], transform, batches: list[list[int]] | None, batch_size: int):
        ds = SplitDataset(self.store, indexes, [self.splits.labels[i] for i in indexes], transform)
        kw = {"num_workers": self.cfg.num_workers, "collate_fn": collate, "pin_memory": self.device.type == "cuda"}
        if batches is not None:
            return torch.utils.data.DataLoader(ds, batch_sampler=batches, **kw)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, **kw)

    def batches(self, epoch: int) -> list[list[int]]:
        """The (deterministic) batches of an epoch: positions into the train index list."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.splits.train), generator=g).tolist()
        bs = self.cfg.batch_size
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # batch normalisation cannot train on one image
        return batches

    def run_batches(self, batches: list[list[int]]):
        return self._loader(self.splits.train, self.train_tf, batches, self.cfg.batch_size)

    def val_size(self) -> int:
        return len(self.splits.val)

    def _autocast(self):
        if not self.amp_dtype:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, x, y):
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, resume_state: dict | None, prebuilt=None) -> None:
        from vitrine.models.classifiers import backbones
        from vitrine.models.classifiers.transforms import eval_transform, train_transform

        cfg = self.cfg
        self.begin(cfg.seed, cfg.threads, cfg.device, fresh=resume_state is None and prebuilt is None)
        if not cfg.threads and self.device.type == "cpu" and cfg.num_workers:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.num_workers))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.splits = prepare_splits(self.dataset, cfg)
        n_classes = len(self.classes)
        if prebuilt is None:
            prebuilt = backbones.build_classifier(
                cfg.backbone, n_classes, pretrained=cfg.pretrained and resume_state is None, weights=cfg.weights
            )
        model, self.data_config = prebuilt
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        self.head = backbones.classifier_head(self.model)
        self.frozen_modules = []
        if cfg.freeze_backbone:
            for p in self.model.parameters():
                p.requires_grad_(False)
            for p in self.head.parameters():
                p.requires_grad_(True)
        elif cfg.freeze_stages:
            stages = backbones.stem_and_stages(self.model)
            if cfg.freeze_stages > len(stages) - 1:
                raise VitrineError(
                    f"freeze_stages={cfg.freeze_stages}: {cfg.backbone} has a stem and {len(stages) - 1} stages",
                    hint=f"freeze at most {len(stages) - 1} stages, or use freeze_backbone",
                )
            self.frozen_modules = stages[: cfg.freeze_stages + 1]  # the stem, then N stages
            for module in self.frozen_modules:
                for p in module.parameters():
                    p.requires_grad_(False)
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.amp_dtype = None
        if cfg.amp == "on" or (cfg.amp == "auto" and self.device.type == "cuda"):
            if self.device.type == "cuda":
                self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.device.type == "cuda" and self.amp_dtype == torch.float16
        )
        train_labels = [self.splits.labels[i] for i in self.splits.train]
        self.class_weights = balanced_class_weights(train_labels, n_classes) if cfg.class_weights else None
        weight = (
            torch.tensor(self.class_weights, dtype=torch.float32, device=self.device) if cfg.class_weights else None
        )
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
        self.train_tf = train_transform(cfg.image_size, self.data_config, cfg.augment)
        self.eval_tf = eval_transform(cfg.image_size, self.data_config)

        budget = int(cfg.cache_mb) * 2**20 if cfg.cache_images else 0
        self.store = ImageStore(self.splits.paths, max_side=math.ceil(cfg.image_size * 1.5), budget_bytes=budget)

        self.steps_per_epoch = len(self.batches(0))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup = min(cfg.warmup_epochs / cfg.epochs, 0.99)
        if resume_state is not None:
            self.restore(resume_state)

    def check_resume(self, state: dict) -> None:
        if state.get("classes") != self.classes:
            raise VitrineError(
                f"run {self.run.id!r}: the dataset's classes changed since the checkpoint was written",
                hint="start a new run",
            )

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_header(self) -> dict:
        return {
            "kind": KIND,
            "config": self.cfg.to_dict(),
            "classes": self.classes,
            "backbone": self.cfg.backbone,
            "image_size": self.cfg.image_size,
            "data_config": self.data_config,
        }

    def last_state(self) -> dict:
        return {"scheduler": {"kind": self.cfg.schedule, "step": self.step, "progress": self._progress_fraction()}}

    # -- records --------------------------------------------------------------------------------
    def metrics(self) -> dict:
        metrics = dict(self.run.record.get("metrics") or {})
        metrics.update(
            epochs_completed=self.epoch,
            steps=self.step,
            best_epoch=self.best_epoch,
            best_val_loss=self.policy.stored(self.best),
            train_seconds=round(self._train_seconds(), 2),
            train_images_per_second=(
                round(self.session_images / self.session_train_seconds, 2) if self.session_train_seconds > 0 else None
            ),
            history=self.history,
            skipped=[{"path": self.splits.rel[i], "reason": why} for i, why in sorted(self.skipped.items())],
        )
        if self.history:
            last = self.history[-1]
            metrics["val"] = {"loss": last["val_loss"], "accuracy": last["val_accuracy"]}
        return metrics

    # -- training -------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        lr = self.cfg.lr * lr_factor(self.cfg.schedule, self._progress_fraction(), self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def begin_epoch(self) -> None:
        self.epoch_loss_sum, self.epoch_correct, self.epoch_n = 0.0, 0, 0
        if self.cfg.freeze_backbone:
            self.model.eval()  # frozen batch-norm statistics too
            self.head.train()
        else:
            self.model.train()
            for module in self.frozen_modules:
                module.eval()

    def train_step(self, batch) -> dict | None:
        x, y, bad = batch
        self._note_skipped(bad)
        if x is None or len(y) < 2:
            return None
        lr = self._set_lr()
        x, y = self._to_device(x, y)
        with self._autocast():
            logits = self.model(x)
            loss = self.criterion(logits.float(), y)
        if not torch.isfinite(loss):
            raise VitrineError(
                f"the training loss became {float(loss)} at step {self.step + 1}",
                hint="lower the learning rate (--lr), or turn mixed precision off",
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        n = len(y)
        loss_value = float(loss.detach())
        correct = int((logits.detach().argmax(1) == y).sum())
        self.epoch_loss_sum += loss_value * n
        self.epoch_correct += correct
        self.epoch_n += n
        return {
            "n": n,
            "scalars": {"train/loss": loss_value, "train/acc": correct / n, "lr": lr},
            "info": {
                "loss": loss_value,
                "accuracy": correct / n,
                "epoch_loss": self.epoch_loss_sum / self.epoch_n,
                "epoch_accuracy": self.epoch_correct / self.epoch_n,
                "lr": lr,
            },
        }

    def _predict(self, indexes: list[int], stage: str):
        """(probs n x C float64, labels, mean loss) over ``indexes`` (unreadable images skipped)."""
        bs = self.cfg.eval_batch_size or 2 * self.cfg.batch_size
        loader = self._loader(indexes, self.eval_tf, None, bs)
        self.model.eval()
        probs, labels, loss_sum, n, done = [], [], 0.0, 0, 0
        with torch.inference_mode():
            for x, y, bad in loader:
                self._note_skipped(bad)
                done += len(bad) + (0 if y is None else len(y))
                if x is not None:
                    x, y = self._to_device(x, y)
                    with self._autocast():
                        logits = self.model(x)
                    logits = logits.float()
                    loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                    n += len(y)
                    probs.append(logits.softmax(dim=1).double().cpu().numpy())
                    labels.append(y.cpu().numpy())
                self.progress(stage, done, len(indexes), {"epoch": self.epoch, "epochs": self.cfg.epochs})
        if not n:
            return np.zeros((0, len(self.classes))), np.zeros(0, dtype=np.int64), math.nan
        return np.concatenate(probs), np.concatenate(labels), loss_sum / n

    def validate(self) -> dict:
        started = time.perf_counter()
        probs, labels, loss = self._predict(self.splits.val, "validate")
        self.last_val_seconds = time.perf_counter() - started
        acc = float((probs.argmax(1) == labels).mean()) if len(labels) else math.nan
        return {"val_loss": float(loss), "val_accuracy": acc, "val_n": int(len(labels))}

    def epoch_entry(self, val: dict) -> dict:
        n = self.epoch_n
        return {
            "train_loss": self.epoch_loss_sum / n if n else None,
            "train_accuracy": self.epoch_correct / n if n else None,
            **val,
        }

    def epoch_scalars(self, entry: dict, val: dict) -> dict:
        return {
            "val/loss": val["val_loss"],
            "val/acc": val["val_accuracy"],
            "train/epoch_loss": entry["train_loss"],
            "train/epoch_acc": entry["train_accuracy"],
            "epoch": entry["epoch"],
        }

    # -- final evaluation -----------------------------------------------------------------------
    def evaluate(self) -> dict:
        from PIL import Image

        from vitrine.evaluate.classification import classification_report, measure_speed, summary, write_report
        from vitrine.evaluate.comparable import classifier_cost, split_record
        from vitrine.evaluate.predictions import write_predictions

        best = self.run.checkpoints_dir / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best)["model"])
        split = self.splits.eval_split
        probs, labels, loss = self._predict(self.splits.eval, "evaluate")
        report = {"split": split, **classification_report(labels, probs, self.classes)}
        report["loss"] = None if math.isnan(loss) else loss
        report["checkpoint"] = "best.pt" if best.exists() else "last"
        scored = {self.splits.rel[i] for i in self.splits.eval}
        report.update(split_record(self.dataset, split, samples=[s for s in self.dataset.samples if s.path in scored]))
        speed_images = []
        for i in self.splits.eval[:64]:
            tensor, _ = self.store.get(i)
            if tensor is not None:
                speed_images.append(Image.fromarray(tensor.permute(1, 2, 0).numpy()))
        if speed_images:
            try:
                clf = FinetuneClassifier(self.run.dir, device=str(self.device))
                report["speed"] = measure_speed(
                    clf, speed_images, batch_size=min(32, len(speed_images)), latency_images=10
                )
                report["cost"] = classifier_cost(clf)
            except VitrineError as e:  # pragma: no cover - best.pt was just written
                log.warning("could not measure inference speed: %s", e)
        write_report(self.run.dir, report)
        scored_paths = [self.splits.rel[i] for i in self.splits.eval if i not in self.skipped]
        if len(scored_paths) == len(labels):  # the rows of ``probs``: the images read, in order
            write_predictions(self.run.dir, scored_paths, labels, probs, self.classes)
        else:  # pragma: no cover - an image read once and not again
            log.warning("per-image predictions not kept: %d images for %d rows", len(scored_paths), len(labels))
        self._eval_summary = summary(report)
        return report


def train_finetune(
    workspace,
    dataset,
    config: FinetuneConfig | dict | None = None,
    *,
    progress=None,
    cancel: threading.Event | None = None,
    run_id: str | None = None,
    resume: bool = False,
) -> Run:
    """Fine-tune ``config.backbone`` on ``dataset`` (a ClassificationDataset or its name in the
    workspace); return the finished run.

    ``progress(stage, done, total, info)`` is called with the stages ``load`` (decoding images
    into memory), ``train`` (every step; ``info`` has epoch, epochs, step, steps, loss, accuracy,
    lr, eta_seconds, images_per_second), ``validate``, ``epoch`` (epoch end, with val_loss and
    val_accuracy), ``evaluate`` and ``done``. Setting ``cancel`` stops at the next step: last.pt
    is saved, the run's state becomes ``cancelled`` and :class:`~vitrine.core.errors.Cancelled` is
    raised. ``resume=True`` continues run ``run_id`` from its last.pt; ``config`` may then only
    change the options in ``RESUME_OVERRIDES`` (a dict, or a FinetuneConfig whose values for those
    options are taken).
    """
    from vitrine.models.classifiers import backbones

    ws, ds = resolve(workspace, dataset)
    resume_state = None
    prebuilt = None
    if resume:
        run = load_resumable(ws, run_id, (KIND,), "fine-tuning")
        cfg, resume_state = resumed_config(run, config, FinetuneConfig, RESUME_OVERRIDES)
        if ds.name != run.record.get("dataset"):
            raise VitrineError(f"run {run_id!r} was trained on dataset {run.record.get('dataset')!r}, not {ds.name!r}")
        run.update(config=cfg.to_dict())
    else:
        cfg = config_from(config, FinetuneConfig)
        if len(ds.classes) < 2:
            raise VitrineError(f"dataset {ds.name!r} has {len(ds.classes)} class(es): a classifier needs 2 or more")
        refuse_existing(ws, run_id)
        # built before the run folder exists: unknown backbones and missing weights leave no run behind;
        # seeded first, so that the new head (and a random initialisation) are reproducible
        seed_everything(cfg.seed)
        prebuilt = backbones.build_classifier(
            cfg.backbone, len(ds.classes), pretrained=cfg.pretrained, weights=cfg.weights
        )
        run = Run.create(ws, KIND, ds.name, cfg.backbone, cfg.to_dict(), run_id=run_id)

    trainer = FinetuneTrainer(run, ds, cfg, progress, cancel)
    try:
        with run_lifecycle(run, on_cancel=trainer.cancelled_fields) as life:
            life.start(classes=list(ds.classes), error=None)
            trainer.setup(resume_state, prebuilt)
            prebuilt = None
            trainer.open_writer(resumed=resume_state is not None)
            run.update(
                data={
                    "n_train": len(trainer.splits.train),
                    "n_val": len(trainer.splits.val),
                    "n_eval": len(trainer.splits.eval),
                    "eval_split": trainer.splits.eval_split,
                    "notes": trainer.splits.notes,
                    "class_weights": None if trainer.class_weights is None else trainer.class_weights.tolist(),
                    "device": str(trainer.device),
                    "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else None,
                    "threads": torch.get_num_threads(),
                }
            )
            if cfg.cache_images:
                trainer.store.preload(
                    trainer.splits.train + trainer.splits.val + trainer.splits.eval, trainer.progress, trainer.cancel
                )
                trainer._note_skipped(list(trainer.store.failed.items()))
                good = [i for i in trainer.splits.train if i not in trainer.store.failed]
                if len(good) < 2:
                    raise VitrineError(f"dataset {ds.name!r}: fewer than 2 readable train images")
            stop = trainer.train()
            trainer.finish_training()  # the test evaluation is not training
            trainer.record("evaluate", force=True, stopped=stop)
            report = trainer.evaluate()
            metrics = trainer.metrics()
            metrics[report["split"]] = trainer._eval_summary
            for key in ("speed", "cost"):
                if key in report:
                    metrics[key] = report[key]
            metrics["stopped"] = stop
            life.done(progress={**trainer._run_progress("done"), "eta_seconds": 0}, metrics=metrics)
        trainer.progress(
            "done", trainer.step, trainer.total_steps, {"accuracy": report.get("accuracy"), "stopped": stop}
        )
        return run
    finally:
        trainer.close()
