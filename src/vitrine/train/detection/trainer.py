"""Fine-tuning torchvision's detectors (Faster / Mask R-CNN, RetinaNet, FCOS, SSDlite) on a
detection / instance-segmentation dataset.

:func:`train_detector` trains a network from :mod:`vitrine.models.detectors.torchvision_family`
(Mask R-CNN on EfficientNet-Lite0 with its packaged ImageNet weights by default: works offline) on a
:class:`~vitrine.data.detection.model.DetectionDataset`'s train split, validates with COCO mAP
(``vitrine.evaluate.detection.evaluate_detection``, pycocotools) every epoch, and evaluates the
best checkpoint on the test split (val when there is none). The run lives in the workspace's
``runs/`` folder beside the classification runs (kind ``segmentation`` for Mask R-CNN,
``detection`` for the others), so ``vitrine runs`` lists it:

    run.json                  config, classes, state, progress (epoch, step, ETA), metrics, history
    checkpoints/last.pt       every epoch, on cancel and on the time budget: resumable
    checkpoints/best.pt       the weights with the best validation mAP@.5 (masks for Mask R-CNN)
    tb/                       TensorBoard: train/loss and each loss component, lr per step;
                              val/bbox_map50, val/segm_map50 (and @.5:.95) per validation
    detection_metrics.json, per_class_<bbox|segm>.csv   the final evaluation (vitrine.evaluate.detection)
    predictions.json.gz       the predictions it scored (vitrine.evaluate.predictions_file): the errors view

Checkpoints are atomic (:func:`vitrine.runs.checkpoint.save_checkpoint`). ``resume=True``
continues from ``last.pt`` with the same batches, augmentations and optimizer state as an
uninterrupted run (mid-epoch included). A time budget (``max_minutes``) stops training early
enough for the validation that follows to fit in it, and the run is still evaluated; a
``cancel`` event stops at the next step, keeping ``last.pt``.

The loop, the time budget, the records, checkpoints and resume are the shared
:class:`vitrine.train.trainer.Trainer`'s; :class:`DetectionTrainer` adds the network, its
optimizer, the validation by COCO mAP and the evaluation. The options are
:mod:`vitrine.train.detection.config`'s, the data :mod:`vitrine.train.detection.data`'s; a
finished run is loaded for inference by :func:`vitrine.predict.run_detector.load_run_detector`.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np
import torch

from vitrine.core.errors import VitrineError
from vitrine.core.jsonio import jsonable
from vitrine.data.detection.resolve import resolve_dataset
from vitrine.evaluate import speed
from vitrine.evaluate.comparable import split_record, torch_cost
from vitrine.evaluate.detection import coco_results, report_summary
from vitrine.evaluate.predictions_file import write_predictions
from vitrine.models.detectors.torchvision_family import build_detection_model, model_summary
from vitrine.predict.run_detector import CategoryMapped
from vitrine.runs import Run
from vitrine.runs.checkpoint import CheckpointPolicy, load_checkpoint
from vitrine.runs.lifecycle import run_lifecycle
from vitrine.train.detection.config import KINDS, RESUME_OVERRIDES, DetectionConfig
from vitrine.train.detection.data import (
    DetectionSamples,
    augment,
    prepare,
    subset,
    train_transform,
)
from vitrine.train.trainer import (
    Trainer,
    config_from,
    load_resumable,
    lr_factor,
    refuse_existing,
    resumed_config,
    seed_everything,
)

log = logging.getLogger("vitrine.train.detection")


# ------------------------------------------------------------------------------------------------
# evaluation (through vitrine.evaluate.detection)


def _evaluate(gt, predictions: dict, cfg: DetectionConfig) -> dict:
    from vitrine.evaluate.detection import evaluate_detection

    return evaluate_detection(gt, predictions, score_threshold=cfg.score_threshold, iou_threshold=cfg.iou_threshold)


# ------------------------------------------------------------------------------------------------
# the trainer


class DetectionTrainer(Trainer):
    """Trains a torchvision detector: the hooks of :class:`~vitrine.train.trainer.Trainer` for it.
    ``best.pt`` holds the weights with the highest validation mAP@.5 (masks for Mask R-CNN; the
    first validation is kept whatever its score, so a run that validated has a best.pt)."""

    what = "detection training"
    completed = "epochs"
    best_key = "best_score"

    def __init__(self, run: Run, dataset, cfg: DetectionConfig, progress, cancel):
        super().__init__(run, dataset, cfg, progress, cancel)
        self.nonfinite = 0
        self.best_metric = "segm_map50" if cfg.arch == "maskrcnn" else "bbox_map50"
        self.policy = CheckpointPolicy(self.best_metric, "max", min_delta=1e-9, keep_first=True, fallback="bbox_map50")

    def _lr(self) -> float:
        cfg = self.cfg
        factor = lr_factor(cfg.schedule, min(self._progress_fraction(), 1.0), 0.0)
        if cfg.warmup_steps and self.step < cfg.warmup_steps:
            factor *= max(self.step / cfg.warmup_steps, 1e-3)
        return cfg.lr * factor

    def batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.prep.train), generator=g).tolist()
        bs = self.cfg.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def val_size(self) -> int:
        return len(self.val_positions)

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, resume_state: dict | None, prebuilt=None) -> None:
        cfg = self.cfg
        self.begin(cfg.seed, cfg.threads, cfg.device, fresh=resume_state is None and prebuilt is None)
        self.prep = prepare(self.dataset, cfg)
        self.num_classes = len(self.prep.category_ids) + 1
        if prebuilt is None:
            prebuilt = build_detection_model(cfg.model_options(), self.num_classes, load_weights=False)
        self.model = prebuilt.to(self.device)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        self.params = params
        label_of = {cid: k + 1 for k, cid in enumerate(self.prep.category_ids)}
        self.samples = DetectionSamples(self.dataset, cfg.arch == "maskrcnn", int(cfg.cache_mb) * 2**20, label_of)
        self.transform = train_transform(cfg.augment)
        rng = np.random.default_rng(cfg.seed + 1)
        val = list(self.prep.val)
        if cfg.max_val_images and len(val) > cfg.max_val_images:
            val = sorted(rng.permutation(val)[: cfg.max_val_images].tolist())
            self.prep.notes.append(f"validation each epoch on {len(val)} of {len(self.prep.val)} val images")
        self.val_positions = val
        self.steps_per_epoch = len(self.batches(0))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if resume_state is not None:
            self.restore(resume_state)

    def check_resume(self, state: dict) -> None:
        if [int(i) for i in state.get("category_ids", [])] != self.prep.category_ids:
            raise VitrineError(
                f"run {self.run.id!r}: the dataset's categories changed since the checkpoint was written",
                hint="start a new run",
            )

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_header(self) -> dict:
        return {
            "kind": self.cfg.kind,
            "config": self.cfg.to_dict(),
            "category_ids": self.prep.category_ids,
            "category_names": [self.prep.names[i] for i in self.prep.category_ids],
            "num_classes": self.num_classes,
        }

    # -- prediction -----------------------------------------------------------------------------
    def detector(self):
        from vitrine.models.detectors.torch_detector import TorchvisionDetector

        return TorchvisionDetector(
            CategoryMapped(self.model, self.prep.category_ids),
            {i: self.prep.names[i] for i in self.prep.category_ids},
            name=self.run.id,
            task=self.cfg.kind,
            device=str(self.device),
            batch_size=self.cfg.eval_batch_size,
        )

    def predict(self, positions: list[int], stage: str) -> tuple[dict, list[int]]:
        """Detections (threshold 0: every box the model keeps) per image id, and the positions used."""
        from PIL import Image

        det = self.detector()
        preds: dict = {}
        used: list[int] = []
        bs = self.cfg.eval_batch_size
        try:
            for start in range(0, len(positions), bs):
                self._check_cancel()
                chunk = positions[start : start + bs]
                images, ids = [], []
                for pos in chunk:
                    item, _ = self.samples.get(pos)
                    if item is None:
                        continue
                    images.append(Image.fromarray(item[0].permute(1, 2, 0).numpy()))
                    ids.append(self.dataset.images[pos].id)
                    used.append(pos)
                for image_id, d in zip(ids, det.predict_batch(images, threshold=0.0), strict=True):
                    preds[image_id] = d
                self.progress(stage, min(start + bs, len(positions)), len(positions))
        finally:
            self.model.train()
        return preds, used

    def validate(self) -> dict:
        t0 = time.perf_counter()
        preds, used = self.predict(self.val_positions, "validate")
        metrics = _evaluate(subset(self.dataset, used), preds, self.cfg) if used else {}
        self.last_val_seconds = time.perf_counter() - t0
        return {**report_summary(metrics), "val_seconds": round(self.last_val_seconds, 2)}

    # -- the loop -------------------------------------------------------------------------------
    def begin_epoch(self) -> None:
        self.sums: dict[str, float] = {}
        self.n_steps = 0

    def train_step(self, positions: list[int]) -> dict | None:
        cfg = self.cfg
        images, targets = [], []
        for p in positions:
            item, _ = self.samples.get(self.prep.train[p])
            if item is None:
                continue
            image, target = augment(self.transform, *item)
            images.append(image.to(self.device, non_blocking=True).float().div_(255.0))
            targets.append({k: v.to(self.device, non_blocking=True) for k, v in target.items()})
        if not images:
            return None
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses = self.model(images, targets)
        loss = sum(losses.values())
        value = float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(value):
            self.nonfinite += 1
            log.warning("step %d: loss is %s; step skipped", self.step + 1, value)
            if self.nonfinite >= 10:
                raise VitrineError(
                    f"the training loss was not finite for {self.nonfinite} steps (last at step {self.step + 1})",
                    hint="lower the learning rate (--lr) or keep the warm-up longer (--warmup-steps)",
                )
        else:
            self.nonfinite = 0
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.optimizer.step()
        out = {"loss": value, "lr": lr, **{k: float(v.detach()) for k, v in losses.items()}}
        self.n_steps += 1
        for k, v in out.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        scalars = {("lr" if k == "lr" else f"train/{k}"): v for k, v in out.items()}
        return {"n": len(images), "info": out, "scalars": scalars}

    def epoch_entry(self, val: dict) -> dict:
        n = self.n_steps
        return {
            "train_loss": self.sums["loss"] / n if n else None,
            **{f"train_{k}": v / n for k, v in self.sums.items() if k not in ("loss", "lr") and n},
            **{f"val_{k}": v for k, v in val.items() if k != "val_seconds"},
            "val_seconds": val.get("val_seconds"),
        }

    def epoch_scalars(self, entry: dict, val: dict) -> dict:
        scalars = {f"val/{k}": v for k, v in val.items() if k != "val_seconds"}
        scalars["train/epoch_loss"] = entry["train_loss"]
        return scalars

    # -- final evaluation -----------------------------------------------------------------------
    def evaluate(self) -> dict:
        from PIL import Image

        best = self.run.checkpoints_dir / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best)["model"])
        preds, used = self.predict(self.prep.eval, "evaluate")
        ids_used = [self.dataset.images[p].id for p in used]
        gt = subset(self.dataset, used)
        metrics = _evaluate(gt, preds, self.cfg) if used else {}
        self._write_report(metrics)
        if used:  # the predictions scored, kept for browsing the run's errors image by image
            write_predictions(self.run.dir, coco_results(gt, preds), ids_used, self.prep.eval_split)
        report = {
            "split": self.prep.eval_split,
            "n_images": len(used),
            "checkpoint": "best.pt" if best.exists() else "last",
            **report_summary(metrics),
        }
        report.update(split_record(self.dataset, self.prep.eval_split, image_ids=ids_used))
        # inference speed by the one harness: ms/image at batch 1 (as a user's request runs) and
        # images/s at a batch, preprocessing included
        det = self.detector()
        images = []
        for pos in used[:16]:
            item, _ = self.samples.get(pos)
            images.append(Image.fromarray(item[0].permute(1, 2, 0).numpy()))
        if images:
            timed = speed.measure(
                det.predict_batch,  # at its default score threshold, as a user's request runs
                images,
                batch_size=min(self.cfg.eval_batch_size, len(images)),
                latency_images=10,
                max_repeats=1,
                device=str(self.device),
            )
            report["speed"] = {"ms_per_image": round(timed.latency_ms, 2), **timed.to_dict()}
            # GFLOPs on a real image (the network resizes it to image_size; the heads see its boxes)
            example = [self.samples.get(used[0])[0][0].to(self.device, torch.float32) / 255.0]
            weights = self.run.checkpoints_dir / "best.pt"
            report["cost"] = torch_cost(self.model, example, weights, int(self.cfg.image_size))
        self.model.train()
        return report

    def _write_report(self, metrics: dict) -> None:
        """detection_metrics.json and per_class_<bbox|segm>.csv, through the evaluation's writer."""
        from vitrine.evaluate.detection import write_detection_report

        if metrics:
            write_detection_report(jsonable(metrics), self.run.dir)

    def metrics(self) -> dict:
        return jsonable(
            {
                "epochs_completed": self.epoch,
                "steps": self.step,
                "best_epoch": self.best_epoch,
                "best_metric": self.best_metric,
                "best_val_score": self.policy.stored(self.best),
                "train_seconds": round(self._train_seconds(), 1),
                "train_images_per_second": round(self.session_images / max(self.session_train_seconds, 1e-9), 2),
                "images_trained": self.images_trained,
                "history": self.history,
                "skipped": [
                    {"file": self.dataset.images[p].file_name, "why": why}
                    for p, why in sorted(self.samples.failed.items())
                ],
                "dropped_annotations": self.samples.dropped,
            }
        )


# ------------------------------------------------------------------------------------------------
# runs


def _create_run(ws, kind: str, dataset_name: str, model: str, config: dict, run_id: str | None, extra: dict) -> Run:
    """A new run folder (kinds ``detection`` / ``segmentation``) beside the classification runs."""
    return Run.create(ws, kind, dataset_name, model, config, run_id=run_id, extra={"task": kind, **extra})


def train_detector(
    workspace,
    dataset,
    config: DetectionConfig | dict | None = None,
    *,
    progress=None,
    cancel: threading.Event | None = None,
    run_id: str | None = None,
    resume: bool = False,
    dataset_name: str | None = None,
) -> Run:
    """Train a torchvision detector (``config.arch``) on ``dataset`` (a DetectionDataset, or a COCO json file) and
    return the finished run.

    ``progress(stage, done, total, info)`` is called with the stages ``train`` (every step; info
    has epoch, epochs, step, steps, loss and its components, lr, eta_seconds, images_per_second),
    ``validate``, ``epoch`` (with val_bbox_map50 / val_segm_map50), ``evaluate`` and ``done``.
    Setting ``cancel`` stops at the next step: last.pt is saved, the run becomes ``cancelled`` and
    :class:`~vitrine.core.errors.Cancelled` is raised. ``resume=True`` continues run ``run_id`` from its
    last.pt (``dataset`` may then be None when the run was trained from a file); ``config`` may
    then only change the options in ``RESUME_OVERRIDES``.
    """
    from vitrine.core.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    resume_state = None
    prebuilt = None
    if resume:
        run = load_resumable(ws, run_id, KINDS.values(), "detection")
        if dataset is None:
            source = run.record.get("dataset_path")
            if not source:
                raise VitrineError(f"run {run_id!r} was trained on an in-memory dataset: give the dataset again")
            dataset = source
        ds, name, source = resolve_dataset(dataset, dataset_name or run.record.get("dataset"))
        cfg, resume_state = resumed_config(run, config, DetectionConfig, RESUME_OVERRIDES)
        if name != run.record.get("dataset"):
            raise VitrineError(f"run {run_id!r} was trained on dataset {run.record.get('dataset')!r}, not {name!r}")
        run.update(config=cfg.to_dict())
    else:
        cfg = config_from(config, DetectionConfig)
        ds, name, source = resolve_dataset(dataset, dataset_name)
        prepare(ds, cfg)  # every dataset problem is reported before a run folder exists
        refuse_existing(ws, run_id)
        # built before the run folder exists: missing weights leave no run behind; seeded first
        seed_everything(cfg.seed)
        num_classes = len(ds.categories) + 1
        prebuilt = build_detection_model(cfg.model_options(), num_classes)
        run = _create_run(
            ws,
            cfg.kind,
            name,
            f"{cfg.arch}-{cfg.backbone}",
            cfg.to_dict(),
            run_id,
            {"dataset_path": source} if source else {},
        )

    trainer = DetectionTrainer(run, ds, cfg, progress, cancel)
    try:
        with run_lifecycle(run, on_cancel=trainer.cancelled_fields) as life:
            names = {c.id: c.name for c in ds.categories}
            life.start(classes=[names[i] for i in sorted(names)], category_ids=sorted(names), error=None)
            trainer.setup(resume_state, prebuilt)
            prebuilt = None
            trainer.open_writer(resumed=resume_state is not None)
            run.update(
                data={
                    "n_train": len(trainer.prep.train),
                    "n_val": len(trainer.prep.val),
                    "n_val_used": len(trainer.val_positions),
                    "n_eval": len(trainer.prep.eval),
                    "eval_split": trainer.prep.eval_split,
                    "notes": trainer.prep.notes,
                    "device": str(trainer.device),
                    "threads": torch.get_num_threads(),
                    **model_summary(trainer.model),
                }
            )
            stop = trainer.train()
            trainer.finish_training()  # the test evaluation is not training
            trainer.record("evaluate", force=True, stopped=stop)
            report = trainer.evaluate()
            metrics = trainer.metrics()
            metrics[report["split"]] = report
            # the last validation; the final evaluation kept beside it when it was on val too
            evaluated_on_val = report if report["split"] == "val" else {}
            metrics["val"] = {**evaluated_on_val, **(trainer.history[-1] if trainer.history else {})}
            for key in ("speed", "cost"):
                if key in report:
                    metrics[key] = report[key]
            metrics["stopped"] = stop
            life.done(progress={**trainer._run_progress("done"), "eta_seconds": 0}, metrics=jsonable(metrics))
        trainer.progress(
            "done",
            trainer.step,
            trainer.total_steps,
            {k: v for k, v in report.items() if "map" in k} | {"stopped": stop},
        )
        return run
    finally:
        trainer.close()
