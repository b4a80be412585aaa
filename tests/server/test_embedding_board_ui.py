"""An embedding board on the leaderboard page in headless Chromium: the "Embedding models" table
with the columns that make sense for it (model, space, kNN@10 first, kNN@1, probe, zero-shot, mAP@k,
speed, ms per text query, dimension, bytes per vector), the random-weights badge, and a comparison
started from the page's form, followed until its run joins the table; no horizontal overflow at
800 px. The models are tiny random-weight architectures: their scores test code paths only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "experiments"))
sys.path.insert(0, str(HERE.parent / "models" / "embedders"))
from test_compare_embeddings import make_dataset  # noqa: E402
from tiny_hf import tiny_hf_clip  # noqa: E402
from ui_helpers import ServerThread, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

expect = playwright_expect()

from vitrine.server.app import create_app  # noqa: E402

TIMEOUT_MS = 60_000
TINY = "timm:test_vit?weights=random"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vitrine.core.workspace import Workspace
    from vitrine.experiments.embeddings import compare_embeddings, dataset_target

    tmp = tmp_path_factory.mktemp("embed-board")
    ds = make_dataset(tmp)
    ws = Workspace(tmp / "ws")
    clip = f"hf:{tiny_hf_clip(tmp / 'clip')}?weights=random"
    compare_embeddings(ws, dataset_target(ws, ds), [clip], k=3)
    with ServerThread(create_app(tmp / "ws"), health_path="/api/v1/health") as srv:
        yield srv


def _page(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def test_the_embedding_board_and_its_form(browser, server, shots):
    context, page, errors = _page(browser, 1280)
    page.goto(f"{server.url}/leaderboards/tiny")
    card = page.locator(".board-group")
    expect(card.locator("h2")).to_have_text("Embedding models on the all split")
    heads = [t.strip() for t in card.locator("thead th").all_text_contents()][1:]
    assert heads == [
        "#", "Run", "Model", "Space", "kNN@10 accuracy", "kNN@1 accuracy", "Probe accuracy",
        "Zero-shot accuracy", "mAP@k", "ms/image", "Images/s", "ms/text", "Dim", "Bytes/vector", "Owner",
    ]  # fmt: skip
    row = card.locator("tbody tr").first
    expect(row.locator(".badge-random")).to_have_text("random weights: speed only")
    cells = row.locator("td").all_inner_texts()
    assert cells[4] == "joint" and cells[5].endswith("%") and cells[-3] == "16" and cells[-2] == "72"
    assert card.locator(".board-chart .scatterlayer .point").count() == 1  # the speed-vs-kNN@10 chart

    page.locator("#embed-details summary").click()
    page.fill("#embed-models", TINY)
    page.fill("#embed-k", "3")
    page.click("#embed-submit")
    expect(page.locator("#embed-status")).to_contain_text("Done: 1 model scored on 12 images", timeout=TIMEOUT_MS)
    expect(page.locator(".board-group tbody tr")).to_have_count(2)
    page.screenshot(path=str(shots / "leaderboard-embedding-1280.png"), full_page=True)

    page.fill("#embed-models", "no-such-model")
    page.click("#embed-submit")
    expect(page.locator(".embed-error-message")).to_contain_text("unknown model 'no-such-model'")
    assert not errors, errors
    context.close()

    context, page, errors = _page(browser, 800)
    page.goto(f"{server.url}/leaderboards/tiny")
    expect(page.locator(".board-group tbody tr")).to_have_count(2)
    page.locator("#embed-details summary").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    page.screenshot(path=str(shots / "leaderboard-embedding-800.png"), full_page=True)
    # a run of the board opens on the run page, which renders it without a script error
    page.locator(".board-group tbody tr .run-id a").first.click()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shots / "embedding-run-800.png"), full_page=True)
    assert not errors, errors
    context.close()
