"""Peak memory of `vitrine index` and of the search-by-image upload route on hostile images.

Three legal PNG files that cost a few hundred bytes to a few hundred KiB on disk:

  thin-65000   1 x 65000 pixels  (an extreme aspect ratio: a naive "resize the shorter side to
               224, keep the aspect ratio" makes it 224 x 14.5 million pixels)
  thin-10000   1 x 10000 pixels
  big-9000     9000 x 9000 pixels (81 M pixels, under the default 100 M limit; one full RGB decode
               is 243 MB); indexing gets a folder of 8 distinct ones

For each, a fresh project holding that one image (plus one ordinary photo) is indexed with the
offline model by `python -m vitrine.cli index` in a subprocess (8 decode threads, as on an 8-core
machine) whose resident memory (RSS, with its children) is sampled every 10 ms; the baseline is
the same project with the ordinary photo only.
Then one `vitrine serve` process is started on a workspace holding an indexed project, warmed up
with an ordinary upload, and each file is POSTed to /api/v1/projects/{name}/search/image (the
thin files once, the 9000 x 9000 one 8 times at once); the table gives the server's RSS before,
its peak during, and after (1 s later). A process whose RSS passes --cap-mb is killed (so that
the machine survives the "before" measurement) and reported as such.

Usage:
    python benchmarks/hostile_memory.py [--cap-mb 6000] [--cases thin-65000,thin-10000,big-9000]
        [--skip-index] [--skip-server] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODEL = "offline-concepts"


def make_png(kind: str, path: Path, variant: int = 0) -> None:
    if kind == "thin-65000":
        im = Image.new("RGB", (1, 65000), (200, 40, 40))
    elif kind == "thin-10000":
        im = Image.new("RGB", (1, 10000), (40, 200, 40))
    elif kind == "big-9000":
        # smooth gradient: a legal photo-sized image that compresses to a few hundred KiB
        ramp = np.linspace(0, 255, 9000, dtype=np.float32).astype(np.uint8)
        arr = np.broadcast_to(ramp[None, :], (9000, 9000)).copy()
        arr[0, 0] = variant  # distinct contents (the same content is decoded once)
        im = Image.fromarray(arr, "L").convert("RGB")
    else:
        raise SystemExit(f"unknown case {kind}")
    im.save(path, "PNG", optimize=True)


def photo(path: Path) -> None:
    from skimage import data

    Image.fromarray(data.chelsea()).save(path, "JPEG", quality=90)


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class Sampler:
    """Samples a process's RSS every 10 ms; kills it past ``cap`` bytes."""

    def __init__(self, pid: int, cap: int):
        self.proc = psutil.Process(pid)
        self.cap, self.peak, self.killed = cap, 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = tree_rss(self.proc)
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            if rss > self.cap:
                self.killed = True
                for p in [*self.proc.children(recursive=True), self.proc]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                return
            time.sleep(0.01)

    def reset(self):
        self.peak = 0

    def stop(self):
        self._stop.set()
        self._thread.join()


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("VITRINE_DECODE_WORKERS", "8")  # as on an 8-core machine
    return e


def index_case(work: Path, case: str | None, cap: int) -> dict:
    proj = work / f"proj-{case or 'baseline'}"
    (proj / "images" / "a").mkdir(parents=True)
    photo(proj / "images" / "a" / "cat.jpg")
    copies = 8 if case == "big-9000" else 1  # a folder of big scans, decoded by 8 threads
    for i in range(copies if case else 0):
        make_png(case, proj / "images" / "a" / (f"{case}.png" if i == 0 else f"{case}-{i}.png"), variant=i)
    cmd = [sys.executable, "-m", "vitrine.cli", "index", str(proj), "--model", MODEL, "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=work)
    sampler = Sampler(proc.pid, cap)
    stdout, stderr = proc.communicate()
    sampler.stop()
    result = {
        "case": case or "baseline",
        "file_bytes": (proj / "images" / "a" / f"{case}.png").stat().st_size if case else 0,
        "rc": proc.returncode,
        "peak_mb": round(sampler.peak / 2**20),
        "killed_over_cap": sampler.killed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if proc.returncode == 0:
        report = json.loads(stdout)
        result["embedded"] = report.get("embedded")
        result["failed"] = [f["reason"] for f in report.get("failed", [])]
    else:
        result["stderr_tail"] = stderr.decode(errors="replace")[-400:]
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cases(work: Path, cases: list[str], cap: int) -> list[dict]:
    ws = work / "ws"
    proj = ws / "demo"
    (proj / "images" / "a").mkdir(parents=True)
    photo(proj / "images" / "a" / "cat.jpg")
    subprocess.run(
        [sys.executable, "-m", "vitrine.cli", "index", str(proj), "--model", MODEL, "--json"],
        env=env(),
        check=True,
        capture_output=True,
    )
    files = {}
    for case in cases:
        files[case] = work / f"{case}.png"
        make_png(case, files[case])
    cat = (proj / "images" / "a" / "cat.jpg").read_bytes()
    results = []
    server = None
    try:
        for case in cases:
            if server is None or server[1].killed:  # a fresh server after one was killed
                if server is not None:
                    stop_server(*server)
                server = start_server(work, ws, cap, cat)
            proc, sampler, url = server
            n = 8 if case == "big-9000" else 1
            data = files[case].read_bytes()
            time.sleep(0.5)
            before = tree_rss(sampler.proc)
            sampler.reset()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                answers = list(pool.map(lambda i, u=url, d=data, c=case: post(u, f"{c}.png", d), range(n)))
            seconds = time.perf_counter() - t0
            time.sleep(1.0)
            after = tree_rss(sampler.proc) if not sampler.killed else 0
            results.append(
                {
                    "case": f"{case} x{n} upload",
                    "file_bytes": len(data),
                    "before_mb": round(before / 2**20),
                    "peak_mb": round(sampler.peak / 2**20),
                    "after_mb": round(after / 2**20),
                    "killed_over_cap": sampler.killed,
                    "seconds": round(seconds, 1),
                    "status": sorted({str(a[0]) for a in answers}),
                    "answer": answers[0][1] if answers[0][0] != 200 else "",
                }
            )
    finally:
        if server is not None:
            stop_server(*server)
    return results


def post(url: str, name: str, data: bytes):
    import httpx

    try:
        with httpx.Client(timeout=600) as c:
            r = c.post(url, files={"file": (name, data)})
            return r.status_code, r.text[:160]
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def start_server(work: Path, ws: Path, cap: int, warmup: bytes):
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitrine.cli", "serve", str(ws), "--port", str(port), "--single-user"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
        cwd=work,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    url = f"{base}/api/v1/projects/demo/search/image"
    for _ in range(2):  # warm-up: loads the model
        status, text = post(url, "cat.jpg", warmup)
        if status != 200:
            raise SystemExit(f"warm-up upload failed: {status} {text}")
    return proc, Sampler(proc.pid, cap), url


def stop_server(proc, sampler, _url) -> None:
    sampler.stop()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cap-mb", type=int, default=6000)
    ap.add_argument("--cases", default="thin-65000,thin-10000,big-9000")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    cap = args.cap_mb * 2**20
    work = Path(tempfile.mkdtemp(prefix="vitrine-hostile-"))
    out: dict = {"cap_mb": args.cap_mb, "index": [], "server": []}
    try:
        if not args.skip_index:
            print(f"{'vitrine index':<22}{'file':>10}{'peak MB':>9}{'rc':>4}  outcome")
            for case in [None, *cases]:
                r = index_case(work, case, cap)
                out["index"].append(r)
                outcome = (
                    f"killed over {args.cap_mb} MB"
                    if r["killed_over_cap"]
                    else (f"embedded {r.get('embedded')}, failed {r.get('failed')}" if r["rc"] == 0 else "error")
                )
                print(f"{r['case']:<22}{r['file_bytes']:>10}{r['peak_mb']:>9}{r['rc']:>4}  {outcome}", flush=True)
        if not args.skip_server:
            print(f"\n{'upload':<22}{'file':>10}{'before':>8}{'peak':>8}{'after':>8}  status")
            for r in server_cases(work, cases, cap):
                out["server"].append(r)
                note = "killed over cap" if r["killed_over_cap"] else f"{r['status']} {r['answer']}"
                mb = f"{r['before_mb']:>8}{r['peak_mb']:>8}{r['after_mb']:>8}"
                print(f"{r['case']:<22}{r['file_bytes']:>10}{mb}  {note}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
