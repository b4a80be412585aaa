"""The server's ``train`` job kind after a restart: a fine-tuning left running by a dead server
resumes from its run's last.pt; a linear probe (no checkpoint) starts over in the same run folder.
The trainers are replaced by fakes that record how they were called (the real resume is tested
in tests/train/classification)."""

from __future__ import annotations

import socket
import time

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import insert

from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.jobs.table import jobs as jobs_table
from vitrine.runs import Run
from vitrine.server.app import create_app
from vitrine.store.db import database_url, open_database


def _dead_worker() -> str:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:gone"


def test_training_jobs_left_running_resume_or_start_over(tmp_path, monkeypatch):
    import vitrine.train.classification.finetune as finetune
    import vitrine.train.classification.linear_probe as linear_probe

    ws = Workspace(tmp_path)
    images = tmp_path / "images"
    samples = []
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        for i in range(2):
            (images / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), colour).save(images / label / f"{i}.png")
            samples.append(Sample(f"{label}/{i}.png", label, "train"))
    ClassificationDataset(name="tiny", root=images, samples=samples, source={"kind": "test"}).save(
        ws.dataset_dir("tiny")
    )
    ft = Run.create(ws, "finetune", "tiny", "efficientnet-lite0", {"epochs": 3}, "ft-1")
    ft.update(state="running")
    ft.checkpoints_dir.mkdir(parents=True)
    (ft.checkpoints_dir / "last.pt").write_bytes(b"a checkpoint")
    Run.create(ws, "linear-probe", "tiny", "offline-concepts", {}, "lp-1").update(state="running")

    calls = []

    def fake_finetune(workspace, dataset, config=None, *, progress=None, cancel=None, run_id=None, resume=False):
        calls.append(("finetune", dataset.name, run_id, resume))
        progress("train", 3, 3, {"epoch": 3, "epochs": 3})
        run = Run.load(workspace, run_id)
        run.update(state="done")
        return run

    def fake_probe(workspace, dataset, *, config=None, progress=None, cancel=None, run_id=None, **kw):
        calls.append(("linear-probe", dataset.name, run_id, (workspace.run_dir(run_id) / "run.json").exists()))
        run = Run.create(workspace, "linear-probe", dataset.name, "offline-concepts", config or {}, run_id)
        run.update(state="done")
        return run

    monkeypatch.setattr(finetune, "train_finetune", fake_finetune)
    monkeypatch.setattr(linear_probe, "train_linear_probe", fake_probe)

    engine = open_database(database_url(tmp_path))
    dead = _dead_worker()
    now = time.time()
    ids = {}
    with engine.begin() as conn:
        for job_id, method, run_id in (("aaaaaaaaaaa1", "finetune", "ft-1"), ("aaaaaaaaaaa2", "linear-probe", "lp-1")):
            ids[method] = job_id
            conn.execute(
                insert(jobs_table).values(
                    id=job_id,
                    kind="train",
                    target=f"dataset:tiny-{method}",
                    params={"dataset": "tiny", "request": {"method": method}, "run_id": run_id},
                    state="running",
                    created_at=now,
                    started_at=now,
                    heartbeat_at=now,
                    worker_id=dead,
                    attempts=1,
                )
            )

    with TestClient(create_app(tmp_path)) as c:  # starting the server recovers the two jobs
        deadline = time.monotonic() + 60
        for job_id in ids.values():
            while (job := c.get(f"/api/v1/jobs/{job_id}").json())["state"] not in ("done", "failed", "cancelled"):
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
            assert job["state"] == "done", job
            assert job["attempts"] == 2
            assert job["result"]["run_id"] == job["params"]["run_id"]
        ft_job = c.get(f"/api/v1/jobs/{ids['finetune']}").json()
        assert any("resuming run ft-1 from its last checkpoint" in line for line in ft_job["log"])
        lp_job = c.get(f"/api/v1/jobs/{ids['linear-probe']}").json()
        assert any("starting it over" in line for line in lp_job["log"])

    assert sorted(calls) == [("finetune", "tiny", "ft-1", True), ("linear-probe", "tiny", "lp-1", False)]
    assert sorted(ws.run_ids()) == ["ft-1", "lp-1"]  # one run folder each, none added
