"""The project commands of ``vitrine``: ``init``, ``check``, ``index``, ``search``, ``tag``, ``status``,
``models``, ``export``, ``serve`` and ``demo`` (a project folder holds images/ and ontology/; the
workbench behind them is :class:`vitrine.project.Project`). Every command that prints results takes --json.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out, with_progress
from vitrine.core.errors import VitrineError

ProjectDir = Annotated[Path, typer.Argument(help="project folder (holds images/ and ontology/)")]


def init(
    project_dir: ProjectDir,
    keyword: Annotated[
        list[str] | None, typer.Option("--keyword", "-k", help='"Keyword=description", repeatable')
    ] = None,
):
    """Create a project folder: images/ and ontology/<name>_ontology.txt."""
    from vitrine.collection.layout import init_project, project_paths

    with guard():
        keywords: dict[str, str] = {}
        for item in keyword or []:
            if "=" not in item:
                raise VitrineError(f"--keyword {item!r} must look like Keyword=description")
            k, d = (unicodedata.normalize("NFC", x.strip()) for x in item.split("=", 1))
            if k in keywords:
                raise VitrineError(
                    f"--keyword {k!r} is given twice ({keywords[k]!r} and {d!r}): a keyword is defined once",
                    hint=f"keep one --keyword {k}=... (or give the other a different name)",
                )
            keywords[k] = d
        existed = project_paths(project_dir).ontology_file.exists()
        paths = init_project(project_dir, keywords=keywords or None)
    if keywords and existed:
        err.print(
            f"[yellow]warning:[/] {paths.ontology_file} already exists and is never overwritten: "
            "the --keyword values were not written; add them to that file",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"project [bold]{paths.name}[/] ready at {paths.project_dir}")
    out.print(f"  put images in   {paths.images_dir}/<subfolder>/")
    out.print(f"  edit keywords in {paths.ontology_file}")
    out.print(f"  then run        vitrine index {project_dir}")


def check(project_dir: ProjectDir, as_json: JsonOpt = False):
    """Validate the project layout and the ontology; report every problem with its line."""
    from vitrine.collection.layout import validate_layout
    from vitrine.collection.ontology import load_ontology
    from vitrine.project import CheckReport, project_paths

    with guard():
        paths = project_paths(project_dir)
        report = CheckReport(layout=validate_layout(project_dir), ontology=load_ontology(paths.ontology_file))
    if as_json:
        emit_json(report.to_dict())
    else:
        for p in report.layout:
            colour = "red" if p.severity == "error" else "yellow"
            out.print(
                f"[{colour}]{p.severity}[/]: {p.path}: {p.message}" + (f"\n  hint: {p.hint}" if p.hint else ""),
                highlight=False,
                soft_wrap=True,
            )
        for p in report.ontology.problems:
            colour = "red" if p.severity == "error" else "yellow"
            out.print(
                f"[{colour}]ontology {p.severity}[/] {p.file}:{p.line}: {p.message}\n  {p.text!r}",
                highlight=False,
                soft_wrap=True,
            )
        n = len(report.ontology.entries)
        out.print(f"{'[green]ok[/]' if report.ok else '[red]problems found[/]'}: {n} ontology entries")
    raise typer.Exit(0 if report.ok else 1)


def index(
    project_dir: ProjectDir,
    model: Annotated[str | None, typer.Option(help="embedding model (see `vitrine models`)")] = None,
    weights: Annotated[str | None, typer.Option(help="local weights file for hub models")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=1024)] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="embed on a Ray cluster: `local` (a Ray started on this machine for the run), `auto` "
            "(the cluster of this node) or the head's HOST:PORT; every node must see the images at the same path",
        ),
    ] = None,
    ray_actors: Annotated[
        int | None, typer.Option(min=1, max=4096, help="actors in the pool (default: as many as fit)")
    ] = None,
    ray_cpus_per_actor: Annotated[
        int | None, typer.Option(min=1, max=256, help="CPUs (and model threads) per actor (default: 1 or 2)")
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="what embeds the images: auto (measured, from VITRINE_RUNTIME_MIN_IMAGES images on), torch, "
            "onnxruntime, onnxruntime-int8, openvino, openvino-bf16, openvino-int8 (default: $VITRINE_RUNTIME or auto; "
            "with --ray, what each actor uses)"
        ),
    ] = None,
    as_json: JsonOpt = False,
):
    """Embed new or changed images and update the search index (incremental, resumable)."""
    from vitrine.project import Project

    with guard():
        ray_options = _ray_options(ray, ray_actors, ray_cpus_per_actor)
        proj = Project(project_dir)
        report = with_progress(
            lambda progress, cancel: proj.index(
                model=model,
                weights=weights,
                progress=progress,
                cancel=cancel,
                batch_size=batch_size,
                ray=ray_options,
                runtime=runtime,
            ),
            interrupted=lambda: _index_interrupted(proj),
        )
    if as_json:
        emit_json(report.to_dict())
        return
    out.print(f"model [bold]{report.model}[/] ({report.model_reason})", highlight=False)
    table = Table(show_header=False, box=None)
    table.add_row("embedded", str(report.embedded))
    table.add_row("unchanged", str(report.unchanged))
    table.add_row("removed", str(report.removed))
    table.add_row("failed", str(len(report.failed)))
    table.add_row("images/s", f"{report.images_per_second:.1f}")
    if report.runtime:
        table.add_row("runtime", report.runtime.get("line", ""))
    table.add_row("time", stage_line(report.stages))
    if isinstance(report.stages.get("ray"), dict):
        table.add_row("ray", ray_line(report.stages["ray"]))
    out.print(table)
    for f in report.failed:
        out.print(f"  [yellow]skipped[/] {f['path']}: {f['reason']}", highlight=False, soft_wrap=True)


def stage_line(stages: dict) -> str:
    """Where an index run's time went, in one line (the embedding's stages overlap: decoding runs in
    threads beside the model; "waiting" is the time the model had nothing to do)."""
    s = {k: v for k, v in stages.items() if isinstance(v, int | float)}
    if not s:
        return "-"
    parts = [f"load {s.get('load_seconds', 0):.1f} s", f"scan {s.get('scan_seconds', 0):.1f} s"]
    if s.get("runtime_seconds", 0) >= 0.05:
        parts.append(f"runtime {s['runtime_seconds']:.1f} s")
    if s.get("decode_seconds") or s.get("model_seconds"):
        parts.append(
            f"decode {s['decode_seconds']:.1f} s in {s['decode_workers']} threads "
            f"(model waited {s['wait_seconds']:.1f} s)"
        )
        parts += [f"model {s['model_seconds']:.1f} s", f"store {s['store_seconds']:.1f} s"]
    parts.append(f"index {s.get('index_seconds', 0):.1f} s")
    if s.get("text_export_seconds", 0) >= 0.05:  # the text tower exported for queries (once per weights)
        parts.append(f"text tower {s['text_export_seconds']:.1f} s")
    return ", ".join(parts)


def _ray_options(address: str | None, actors: int | None, cpus_per_actor: int | None):
    """The Ray options of ``index``, or None for a local run (``--ray-*`` need ``--ray``)."""
    if address is None:
        if actors is not None or cpus_per_actor is not None:
            raise VitrineError(
                "--ray-actors and --ray-cpus-per-actor apply to a run on Ray only",
                hint="add --ray ADDRESS (local, auto or HOST:PORT)",
            )
        return None
    from vitrine.embed.distributed import RayOptions

    return RayOptions(address=address.strip(), actors=actors, cpus_per_actor=cpus_per_actor)


def ray_line(ray: dict) -> str:
    """The pool an index run used on Ray, in one line."""
    line = (
        f"{ray.get('actors', 0)} actors on {ray.get('nodes', 0)} nodes "
        f"({ray.get('cpus_per_actor', 0)} CPU(s) each; the cluster: {ray.get('cluster_nodes', 0)} nodes, "
        f"{ray.get('cluster_cpus', 0):g} free CPUs) at {ray.get('address')}"
    )
    line += f", joined in {ray.get('connect_seconds', 0):.1f} s"
    if ray.get("first_batch_seconds") is not None:  # the actors starting, each loading the model
        line += f", first batch after {ray['first_batch_seconds']:.1f} s"
    return line


def _index_interrupted(proj) -> str:
    """What an interrupted ``index`` really kept, read back from the catalog (committed batches)."""
    report = proj.index_in_progress
    if report is None:
        return "nothing was embedded (the run stopped before its model was loaded)"
    indexed = proj.catalog.models().get(report.model, 0)
    if not indexed:
        return f"nothing was embedded yet with {report.model}"
    total = proj.catalog.counts()["contents"]
    return f"the images embedded so far are kept: {indexed} of {total} indexed with {report.model}"


def search(
    project_dir: ProjectDir,
    text: Annotated[str | None, typer.Argument(help="free-text query")] = None,
    keyword: Annotated[str | None, typer.Option(help="an ontology keyword")] = None,
    image: Annotated[Path | None, typer.Option(help="an example image (any file)")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=1000, help="number of results")] = 10,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    folder: Annotated[str | None, typer.Option(help="restrict to a subfolder of images/")] = None,
    model: Annotated[str | None, typer.Option(help="must match the model the project was indexed with")] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="keep images with this detector tag (`vitrine tag`); repeatable: all of them"),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(min=-1.0, max=1.0, help="keep hits whose score (cosine, -1..1) is at least this"),
    ] = None,
    within: Annotated[
        float | None, typer.Option(min=0.0, max=2.0, help="keep hits scoring at most this much below the best one")
    ] = None,
    sort: Annotated[str, typer.Option(help="order of the hits kept: score (best first), name or date (newest)")] = (
        "score"
    ),
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="also write the hits as CSV (path, score, folder, size...)")
    ] = None,
    to_dataset: Annotated[
        str | None, typer.Option(help="also save the hits as a new classification dataset with this name")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="the class of the new dataset's images (default: the query)")
    ] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="where --to-dataset saves it (default: $VITRINE_HOME or here)")
    ] = None,
    as_json: JsonOpt = False,
):
    """Search a project by text, ontology keyword, or example image."""
    from vitrine.project import Project
    from vitrine.search.query import Query

    with guard():
        query = Query.one_of(
            "query: TEXT, --keyword K, or --image PATH",
            text=text,
            keyword=keyword,
            image=image,
            model=model,
            k=k,
            offset=offset,
            folder=folder,
            tags=tag,
            min_score=min_score,
            within=within,
            sort=sort,
        )
        proj = Project(project_dir)
        result = proj.query(query)
        paths = [h.path for h in result.hits]
        if csv_file is not None:
            from vitrine.core.atomic import atomic_open

            try:
                with atomic_open(csv_file, "w", newline="") as fp:
                    proj.export_results_csv(fp, paths, {h.path: h.score for h in result.hits}, allow_empty=True)
            except OSError as exc:
                raise VitrineError(f"cannot write {csv_file}: {exc.strerror or exc}") from None
            err.print(f"wrote {len(paths)} hits to {csv_file}", highlight=False)
        if to_dataset is not None:
            name = label or text or keyword or (image.name if image else "results")
            dataset = proj.export_results_dataset(paths, to_dataset, name, workspace=workspace)
            saved = f"saved {len(dataset.samples)} images as dataset {to_dataset!r} (class {name!r})"
            err.print(saved, highlight=False)
    note = result.language_note
    if note:  # on stderr, so that --json output stays a list of hits
        err.print(f"[yellow]warning:[/] {note['message']}", highlight=False, soft_wrap=True)
        err.print(f"[yellow]hint:[/] {note['hint']}", highlight=False, soft_wrap=True)
    if as_json:
        emit_json(
            [{"path": h.path, "score": h.score, "folder": h.folder, "duplicates": h.duplicates} for h in result.hits]
        )
        return
    q = result.query
    title = {
        "text": lambda: f"“{q['text']}”",
        "keyword": lambda: f"{q['keyword']} — {q['description']}",
        "image": lambda: f"like {q['image']}",
    }[q["kind"]]()
    if q.get("tags"):
        title += "  with tags " + ", ".join(q["tags"])
    table = Table(title=f"{title}  [dim](model {result.model})[/]")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("image")
    for i, h in enumerate(result.hits, offset + 1):
        table.add_row(str(i), f"{h.score:.3f}", h.path + (f"  (+{len(h.duplicates)} same)" if h.duplicates else ""))
    out.print(table)


def tag(
    project_dir: ProjectDir,
    model: Annotated[str, typer.Option(help="detection model or detection run id (see `vitrine models`)")] = (
        "ssd-mobilenet-v2-coco"
    ),
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="keep boxes scoring at least this")] = 0.5,
    batch_size: Annotated[int | None, typer.Option(min=1, max=256)] = None,
    as_json: JsonOpt = False,
):
    """Run a detector over the images and keep its labels as tags (incremental, resumable)."""
    from vitrine.project import Project

    with guard():
        proj = Project(project_dir)
        report = with_progress(
            lambda progress, cancel: proj.tag(
                model=model, threshold=threshold, progress=progress, cancel=cancel, batch_size=batch_size
            ),
            interrupted="the images tagged so far are kept",
        )
        counts = proj.tags()
    if as_json:
        emit_json(report.to_dict() | {"tags": counts})
        return
    out.print(f"tagged with [bold]{report.model}[/] at threshold {report.threshold}", highlight=False)
    table = Table(show_header=False, box=None)
    table.add_row("tagged", str(report.tagged))
    table.add_row("unchanged", str(report.unchanged))
    table.add_row("objects", str(report.objects))
    table.add_row("failed", str(len(report.failed)))
    table.add_row("images/s", f"{report.images_per_second:.1f}")
    out.print(table)
    if counts:
        out.print("tags: " + ", ".join(f"{label} ({n})" for label, n in counts.items()), highlight=False)
    for f in report.failed:
        out.print(f"  [yellow]skipped[/] {f['path']}: {f['reason']}", highlight=False, soft_wrap=True)


def status(project_dir: ProjectDir, as_json: JsonOpt = False):
    """Show what is indexed, with which model, and what failed."""
    from vitrine.project import Project

    with guard():
        st = Project(project_dir).status()
    if as_json:
        emit_json(st)
        return
    out.print(f"[bold]{st['name']}[/]: {st['files']} images", highlight=False)
    if st["model"] is None:
        out.print("  not indexed yet: run `vitrine index` to embed the images", highlight=False)
    elif not st["indexed"]:
        out.print(
            f"  not indexed yet: no image has been embedded with {st['model']} "
            "(an indexing run was stopped); run `vitrine index` to embed them",
            highlight=False,
            soft_wrap=True,
        )
    else:
        more = f", {st['pending']} still to embed (run `vitrine index` to finish)" if st["pending"] else ""
        out.print(f"  {st['indexed']} indexed with model {st['model']}{more}", highlight=False, soft_wrap=True)
    for folder, n in st["folders"].items():
        out.print(f"  {folder or '(top level)'}: {n}")
    if st["failed"]:
        out.print(f"  [yellow]{st['failed']} failed[/] (cannot be indexed):", highlight=False)
        for f in st["failures"]:
            out.print(f"    {f['path']}: {f['reason']}", highlight=False, soft_wrap=True)
    tagging = st.get("tagging") or {}
    for name, row in (tagging.get("models") or {}).items():
        pending = f", {row['pending']} to tag" if row.get("pending") else ""
        out.print(
            f"tags by {name} (threshold {row['threshold']}): {row['tagged']} images tagged{pending}, "
            f"{tagging.get('tags', 0)} distinct tags",
            highlight=False,
        )
    if not tagging.get("models"):
        out.print("tags: none yet (`vitrine tag` runs a detector over the images)", highlight=False)


def models(
    name: Annotated[str | None, typer.Argument(help="with --bench: the embedding model to measure")] = None,
    as_json: JsonOpt = False,
    probe_hub: Annotated[bool, typer.Option(help="check whether the hub answers")] = False,
    bench: Annotated[
        bool,
        typer.Option("--bench", help="measure the CPU runtimes of an embedding model on images and save the choice"),
    ] = False,
    images: Annotated[
        Path | None, typer.Option(help="with --bench: a folder of images to measure on (default: the demo photos)")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="with --bench: local weights file for hub models")] = None,
):
    """List the models vitrine knows, where their weights come from, and whether they are available."""
    from vitrine.models import registry

    if bench:
        from vitrine.cli.bench import bench_models

        bench_models(name, images, weights, as_json)
        return
    if name is not None or images is not None:
        with guard():
            raise VitrineError("a MODEL and --images go with --bench", hint="add --bench, or drop them")
    from vitrine.embed.runtime_choice import saved_choices

    rows = [s.describe(probe_hub=probe_hub) for s in registry.list_models()]
    for r in rows:
        saved = saved_choices(r["name"]) if r["task"] == "embedding" else []
        r["runtime_choice"] = saved[0] if saved else None
    if as_json:
        emit_json(rows)
        return
    # names and sources never wrap (they are what one copies); the long texts wrap in their column,
    # and why a model is unavailable is said below the table, where it has the whole width
    table = Table(title="models", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True, min_width=max((len(r["name"]) for r in rows), default=4))
    table.add_column("task", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    table.add_column("available", no_wrap=True)
    wide = out.width >= 110  # in a narrower terminal the summaries would squeeze the names
    if wide:
        table.add_column("summary", overflow="fold")
    unavailable = []
    for r in rows:
        if r["available"]:
            where = r["availability"]
            avail = "[green]yes[/]" + (f" ({where})" if where != r["weights_source"] else "")
        else:
            avail = "[red]no[/] (below)"
            unavailable.append(r)
        table.add_row(r["name"], r["task"], r["weights_source"], avail, *([r["summary"]] if wide else []))
    out.print(table)
    if not wide:
        out.print("[dim](each model's summary: in a terminal 110 columns wide, or with --json)[/]", highlight=False)
    for r in unavailable:
        out.print(f"[red]{r['name']}[/] is not available: {r['availability_detail']}", highlight=False, soft_wrap=True)
    for r in rows:
        if r["runtime_choice"]:
            out.print(f"{r['name']} on this CPU: {r['runtime_choice']['summary']}", highlight=False, soft_wrap=True)


def export(
    project_dir: ProjectDir,
    what: Annotated[str, typer.Argument(help="catalog or ontology")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV file (default: stdout)")] = None,
):
    """Export the catalog (path, folder, size, hash) or the ontology as CSV."""
    from vitrine.collection.ontology import ontology_to_csv
    from vitrine.project import Project

    with guard():
        if what not in ("catalog", "ontology"):
            raise VitrineError(f"cannot export {what!r}", hint="choose catalog or ontology")
        proj = Project(project_dir)
        fh = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
        try:
            if what == "catalog":
                proj.export_catalog_csv(fh)
            else:
                ontology_to_csv(proj.ontology, fh)
        finally:
            if output:
                fh.close()
    if output:
        err.print(f"wrote {output}")


def _server_torch_threads() -> None:
    """One torch thread per request by default: a server gets its parallelism from concurrent
    requests. Measured with the default (one OpenMP thread per core) on a 2-core machine with the
    other core busy: a single client's searches took 500 ms each instead of 19 ms (OpenMP threads of
    the request threads waiting on each other). OMP_NUM_THREADS or VITRINE_TORCH_THREADS override;
    training jobs set their own count."""
    raw = os.environ.get("VITRINE_TORCH_THREADS") or ("" if os.environ.get("OMP_NUM_THREADS") else "1")
    if not raw:
        return
    try:
        n = max(1, int(raw))
    except ValueError:
        err.print(f"[yellow]warning:[/] ignoring VITRINE_TORCH_THREADS={raw!r}: expected a number", highlight=False)
        return
    import torch

    torch.set_num_threads(n)


def serve(
    root: Annotated[Path, typer.Argument(help="a project, or a folder of projects")] = Path("."),
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    root_path: Annotated[str, typer.Option(help="path prefix when behind a reverse proxy, e.g. /proxy/8000")] = "",
    multi_user: Annotated[
        bool | None,
        typer.Option(
            "--multi-user/--single-user",
            help="require accounts (`vitrine users add`) for everything but /api/v1/health and the login page "
            "(default: VITRINE_MULTI_USER, else single-user with no login)",
        ),
    ] = None,
):
    """Serve the web UI and the REST API."""
    import uvicorn

    from vitrine.server.app import create_app

    _server_torch_threads()
    with guard():
        if not root.is_dir():
            raise VitrineError(f"{root} is not a folder", hint="give a project folder or a folder of projects")
        application = create_app(root, root_path=root_path, multi_user=multi_user)
    auth = application.state.auth
    if auth.multi_user and not auth.store.list_users():
        err.print(
            "[yellow]warning:[/] multi-user mode and no accounts yet: nobody can sign in. "
            f"Add an admin with `vitrine users add NAME --admin --workspace {root}`",
            highlight=False,
            soft_wrap=True,
        )
    err.print(f"vitrine serving {root.resolve()} on http://{host}:{port}{root_path}/", highlight=False, soft_wrap=True)
    # proxy headers are read by the app, from VITRINE_TRUSTED_PROXIES only (uvicorn's own trusts localhost)
    uvicorn.run(application, host=host, port=port, log_level="info", proxy_headers=False)


def demo(
    root: Annotated[Path, typer.Argument(help="where to build the demo projects")] = Path("demo"),
    index_it: Annotated[bool, typer.Option("--index/--no-index")] = True,
):
    """Build a demo project from real photos that ship with scikit-image and scikit-learn."""
    from vitrine.demo import DEMO_MODEL, DEMO_MODEL_REASON, build_demo

    with guard():
        project_dir = build_demo(root)
        out.print(f"demo project at {project_dir}")
        if index_it:
            from vitrine.project import Project

            report = Project(project_dir).index(model=DEMO_MODEL, reason=DEMO_MODEL_REASON)
            out.print(
                f"indexed {report.embedded} new, {report.unchanged} unchanged with {report.model} "
                f"({report.model_reason})",
                highlight=False,
            )
            out.print('try: "a cat", "a cup of coffee", "a rocket launch", "a motorcycle", or the keyword chips')


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    for command in (init, check, index, search, tag, status, models, export, serve, demo):
        app.command()(command)
