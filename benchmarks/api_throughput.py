"""Search throughput and latency through the HTTP API, with N concurrent clients.

A demo project (``vitrine demo``: the packaged photos indexed with offline-concepts) is built in a
temporary folder. Then, for each mode:

* **in-process** (the baseline, measured in the same run): N threads call ``Project.search`` on one
  open project, no HTTP;
* **single-user**: ``vitrine serve`` on 127.0.0.1 (a subprocess, no login), N client threads with
  httpx send ``GET /api/v1/projects/<p>/search?q=...``;
* **single-torch**: the single-user server again, with ``VITRINE_TEXT_RUNTIME=torch``: its text
  queries run on the torch model, as before the index run exported the text tower to ONNX Runtime
  (the other modes use that exported tower);
* **multi-user**: ``vitrine serve --multi-user`` on the same project; an admin (created with
  ``vitrine users add --admin``) shares the project with a member, and the member's clients send the
  same requests with ``Authorization: Bearer <token>`` (each request: token lookup and the policy).

Every client sends its next request as soon as the previous answer arrives, for ``--seconds``
per (mode, N), queries taken in rotation from a fixed list. Both servers run side by side (an idle
one costs nothing) and, for each N, the three modes take turns, so that a change in the load of
other processes hits them alike. The table shows requests/s, p50/p99
latency, errors, the ratio of requests/s to the in-process baseline with the same N, and the
cores other processes used meanwhile (``/proc/stat``, minus this process and the server).
Loopback only; nothing is downloaded.

Usage:
    python benchmarks/api_throughput.py [--clients 1,4,16] [--seconds 15] [--warmup 2]
        [--modes inprocess,single,torch,multi] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

try:
    import vitrine
    from vitrine.project import open_project
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import vitrine
    from vitrine.project import open_project

QUERIES = [
    "a cat",
    "a cup of coffee",
    "a rocket launch",
    "a motorcycle",
    "a dog on grass",
    "flowers",
    "a person's face",
    "buildings in a city",
    "the sea",
    "a bird",
]
PROJECT = "demo-photos"
K = 20


# ------------------------------------------------------------------------------ machine facts and load
def machine_busy() -> float | None:
    """CPU-seconds all processes have spent so far, machine-wide (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | None) -> float:
    """CPU-seconds (user + system) of a process (this one when ``pid`` is None), 0 if unknown."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_facts() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {os.cpu_count()} CPUs ({usable} usable, {cpu}), Python {platform.python_version()}, "
        f"vitrine {getattr(vitrine, '__version__', '?')}, httpx {httpx.__version__}"
    )


# ------------------------------------------------------------------------------ measurement
@dataclass
class Result:
    mode: str
    clients: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    others: float | None  # cores used by other processes, on average
    first_error: str | None = None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def drive(mode: str, clients: int, seconds: float, warmup: float, make_call, server_pid: int | None) -> Result:
    """Run ``clients`` threads, each calling ``make_call()`` (a function of a query) in a loop."""
    stop_warm = time.perf_counter() + warmup
    stop_at = [float("inf")]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    first_error: list[str] = []
    start_gate = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        call = make_call()
        n = i
        try:
            start_gate.wait()
            while True:
                now = time.perf_counter()
                if now >= stop_at[0]:
                    break
                query = QUERIES[n % len(QUERIES)]
                n += 1
                t0 = time.perf_counter()
                try:
                    call(query)
                    ok = True
                except Exception as exc:  # an error is counted, the run goes on
                    ok = False
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}"[:200])
                t1 = time.perf_counter()
                if t0 >= stop_warm and t1 <= stop_at[0]:
                    if ok:
                        latencies[i].append((t1 - t0) * 1e3)
                    else:
                        errors[i] += 1
        finally:
            close = getattr(call, "close", None)
            if close:
                close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    stop_warm = time.perf_counter() + warmup
    time.sleep(warmup)
    busy0, own0, srv0, t0 = machine_busy(), process_cpu(None), process_cpu(server_pid), time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    busy1, own1, srv1, t1 = machine_busy(), process_cpu(None), process_cpu(server_pid), time.perf_counter()
    wall = stop_at[0] - t0
    lat = [x for per in latencies for x in per]
    others = None
    if busy0 is not None and busy1 is not None:
        others = max(0.0, ((busy1 - busy0) - (own1 - own0) - (srv1 - srv0)) / (t1 - t0))
    return Result(
        mode=mode,
        clients=clients,
        seconds=wall,
        requests=len(lat),
        errors=sum(errors),
        rps=len(lat) / wall,
        p50_ms=percentile(lat, 50),
        p99_ms=percentile(lat, 99),
        others=others,
        first_error=first_error[0] if first_error else None,
    )


class HttpCaller:
    """One client thread's connection: a search request per call, an error unless 200 with hits."""

    def __init__(self, base: str, token: str | None, timeout: float = 60.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=base, headers=headers, timeout=timeout)

    def __call__(self, query: str) -> None:
        r = self.client.get(f"/api/v1/projects/{PROJECT}/search", params={"q": query, "k": K})
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:120]}")
        if not r.json().get("hits"):
            raise RuntimeError("no results")

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------------------ the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vitrine_command() -> list[str]:
    """The ``vitrine`` console script of this interpreter's environment (else the one on PATH)."""
    script = Path(sys.executable).with_name("vitrine")
    return [str(script)] if script.is_file() else ["vitrine"]


def vitrine_cli(*args: str, stdin: str | None = None, env: dict | None = None, allow_fail: bool = False) -> str:
    out = subprocess.run([*vitrine_command(), *args], input=stdin, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0 and not allow_fail:
        raise SystemExit(f"vitrine {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


class Server:
    def __init__(self, root: Path, multi_user: bool, env: dict, log_path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = ["serve", str(root), "--port", str(self.port), "--multi-user" if multi_user else "--single-user"]
        self.proc = subprocess.Popen([*vitrine_command(), *args], stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see {log_path}")
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the server did not answer within 120 s; see {log_path}")

    def warm(self, token: str | None) -> None:
        """One search before timing: the server loads the model on the first one."""
        HttpCaller(self.base, token, timeout=300)(QUERIES[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------ report
HEADERS = ["mode", "clients", "requests", "req/s", "vs in-process", "p50 ms", "p99 ms", "errors", "others"]


def table(results: list[Result]) -> list[list[str]]:
    base = {r.clients: r for r in results if r.mode == "in-process"}
    rows = []
    for r in results:
        b = base.get(r.clients)
        ratio = f"{r.rps / b.rps:.2f}x" if b and b.rps else "-"
        rows.append(
            [
                r.mode,
                str(r.clients),
                str(r.requests),
                f"{r.rps:.1f}",
                ratio,
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                str(r.errors),
                "n/a" if r.others is None else f"{r.others:.2f}",
            ]
        )
    return rows


def print_table(results: list[Result]) -> None:
    rows = table(results)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADERS)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(HEADERS, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent clients")
    ap.add_argument("--seconds", type=float, default=15.0, help="timed seconds per mode and number of clients")
    ap.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each timed run")
    ap.add_argument(
        "--modes", default="inprocess,single,torch,multi", help="which of inprocess,single,torch,multi to run"
    )
    ap.add_argument("--workdir", type=Path, help="where to build the demo (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)
    clients = [int(x) for x in args.clients.split(",") if x.strip()]
    modes = {m.strip() for m in args.modes.split(",") if m.strip()}
    unknown = modes - {"inprocess", "single", "torch", "multi"}
    if unknown or not clients or min(clients) < 1:
        ap.error(f"bad --modes {sorted(unknown)} or --clients {args.clients!r}")

    print("vitrine API throughput benchmark (search through HTTP on loopback)")
    print(machine_facts())
    print(f"load average at start (1/5/15 min): {load_average()}")
    with tempfile.TemporaryDirectory(prefix="vitrine-api-bench-") as tmp:
        work = args.workdir or Path(tmp)
        root = work / "ws"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
        env["VITRINE_HOME"] = str(root)
        t0 = time.perf_counter()
        if not (root / PROJECT).is_dir():
            vitrine_cli("demo", str(root), env=env)
        n_images = sum(1 for p in (root / PROJECT / "images").rglob("*") if p.is_file())
        print(f"demo project: {n_images} images indexed with offline-concepts ({time.perf_counter() - t0:.1f} s)")
        print(f"each run: {args.warmup:g} s warm-up, then {args.seconds:g} s timed; k={K}; {len(QUERIES)} queries")
        print()
        results: list[Result] = []

        def report(r: Result) -> None:
            results.append(r)
            note = f", first error: {r.first_error}" if r.first_error else ""
            print(
                f"  {r.mode:<12} {r.clients:>3} clients: {r.rps:7.1f} req/s, p50 {r.p50_ms:.1f} ms, "
                f"p99 {r.p99_ms:.1f} ms, {r.errors} errors{note}",
                flush=True,
            )

        # everything is set up first, then the modes take turns for each N: a change in the load of
        # other processes hits all of them alike
        callers: dict[str, tuple[object, int | None]] = {}
        servers: list[Server] = []
        project = None
        try:
            if "inprocess" in modes:
                project = open_project(root / PROJECT)
                project.search(QUERIES[0], k=K)  # model load before timing
                callers["in-process"] = (lambda: lambda q: project.search(q, k=K), None)
            if "single" in modes:
                single = Server(root, False, env, work / "serve-single.log")
                servers.append(single)
                single.warm(None)
                callers["single-user"] = (lambda: HttpCaller(single.base, None), single.proc.pid)
            if "torch" in modes:
                torch_env = {**env, "VITRINE_TEXT_RUNTIME": "torch"}
                on_torch = Server(root, False, torch_env, work / "serve-torch.log")
                servers.append(on_torch)
                on_torch.warm(None)
                callers["single-torch"] = (lambda: HttpCaller(on_torch.base, None), on_torch.proc.pid)
            if "multi" in modes:
                for name in ("bench-admin", "bench-user"):
                    extra = ["--admin"] if name == "bench-admin" else []
                    vitrine_cli(
                        "users",
                        "add",
                        name,
                        *extra,
                        "--password-stdin",
                        "-w",
                        str(root),
                        stdin=f"{name}-password\n",
                        env=env,
                        allow_fail=True,
                    )  # may exist (--workdir)
                admin_token = vitrine_cli("users", "reset-token", "bench-admin", "-w", str(root), env=env).split()[-1]
                user_token = vitrine_cli("users", "reset-token", "bench-user", "-w", str(root), env=env).split()[-1]
                multi = Server(root, True, env, work / "serve-multi.log")
                servers.append(multi)
                share = httpx.put(
                    f"{multi.base}/api/v1/access/project/{PROJECT}/shares/bench-user",
                    headers={"Authorization": f"Bearer {admin_token}"},
                    timeout=30,
                )
                if share.status_code != 200:
                    raise SystemExit(f"cannot share the project with the member: {share.status_code} {share.text}")
                multi.warm(user_token)
                callers["multi-user"] = (lambda: HttpCaller(multi.base, user_token), multi.proc.pid)
            for n in clients:
                for mode, (make_call, pid) in callers.items():
                    report(drive(mode, n, args.seconds, args.warmup, make_call, pid))
        finally:
            for server in servers:
                server.stop()
            close = getattr(project, "close", None)
            if close:
                close()
        order = {m: i for i, m in enumerate(callers)}
        results.sort(key=lambda r: (order.get(r.mode, 99), r.clients))

        print()
        print_table(results)
        print()
        print(
            "in-process = Project.search in this process (no HTTP), the same N threads; vs in-process = req/s "
            "ratio to it at the same N."
        )
        print(
            "single-torch = the single-user server with VITRINE_TEXT_RUNTIME=torch: text queries on the torch "
            "model instead of the text tower exported to ONNX Runtime (all the other modes)."
        )
        print(
            "multi-user = a member's Bearer token on a project an admin shared with them (token lookup + policy "
            "on every request)."
        )
        print(
            "others = cores used by other processes during the timed run (/proc/stat minus this process and the "
            "server); 0 on an idle machine."
        )
        print(f"load average at end (1/5/15 min): {load_average()}")
        busy = [r.others for r in results if r.others is not None]
        if busy and max(busy) > 0.25:
            print(
                "WARNING: other processes used the CPUs during the runs (column 'others'): absolute numbers are "
                "noisy; compare the ratios."
            )
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
