"""The curation page and a classification run's error browsing in headless Chromium, at a wide and
a narrow window: near-duplicate groups with the image to keep, the threshold, sorting, paging and
exporting ticked images; outliers; a dataset's label errors; a click on a confusion-matrix cell
opening its images with their probabilities, and a run evaluated before predictions were kept.
Screenshots go to ``$VITRINE_SCREENSHOTS`` when set (else a pytest temporary folder)."""

from __future__ import annotations

import csv
import io
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_helpers import CLASSES, evaluate_by_hand, make_pets, shared, tiny_registered  # noqa: E402
from ui_helpers import ServerThread, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

expect = playwright_expect()

from vitrine.core.workspace import Workspace  # noqa: E402
from vitrine.data.dataset import ClassificationDataset, Sample  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    """The tiny colour embedder of the linear-probe tests, registered for this module."""
    with tiny_registered() as model:
        yield model


@pytest.fixture(scope="module")
def root(tmp_path_factory, indexed_demo, demo_source, tiny) -> Path:
    """The indexed demo with a half-size copy of the cat and a byte copy of the coffee; dataset
    ``mini`` (two sizes of three photos, one cat labelled dog); dataset ``pets`` with run
    ``probe-pets`` (known mistakes) and ``old-probe`` (evaluated before predictions were kept)."""
    import vitrine

    root = tmp_path_factory.mktemp("curate-ui") / "root"
    project = root / "demo"
    shutil.copytree(indexed_demo, project)
    images = project / "images"
    with Image.open(images / "animaux" / "chat.jpg") as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(images / "chat-petit.jpg")
    shutil.copy(images / "objets" / "café.jpg", images / "copie.jpg")
    vitrine.open_project(project).index()

    samples, mini = [], root / "mini-images"
    for label, photo in (("cat", "animaux/chat.jpg"), ("coffee", "objets/café.jpg"), ("moon", "espace/lune.png")):
        with Image.open(demo_source / "images" / photo) as im:
            im = im.convert("RGB")
            (mini / label).mkdir(parents=True)
            im.save(mini / label / "a.jpg", quality=92)
            im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(mini / label / "b.jpg", quality=80)
            samples += [Sample(f"{label}/a.jpg", label, "train"), Sample(f"{label}/b.jpg", label, "val")]
    samples[1] = Sample("cat/b.jpg", "dog", "val")
    ClassificationDataset("mini", mini, samples).save(Workspace(root).dataset_dir("mini"))

    make_pets(root)
    evaluate_by_hand(root)
    old = evaluate_by_hand(root, "old-probe")
    (old.dir / "predictions.csv").unlink()
    # a real linear probe (on the tiny colour embedder) evaluated "before predictions were kept"
    from vitrine.train.classification.linear_probe import train_linear_probe

    colours = shared.make_dataset(root / "colours-images")
    colours.save(Workspace(root).dataset_dir("colours"))
    run = train_linear_probe(root, "colours", embedding_model=shared.TINY, run_id="colours-probe")
    (run.dir / "predictions.csv").unlink()
    return root


@pytest.fixture(scope="module")
def server(root):
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


def open_page(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def wait_list(page):
    page.wait_for_function(
        "() => document.querySelector('#curate-panel').getAttribute('aria-busy') === 'false'"
        " && document.querySelector('#list-loading').hidden"
    )


def captions(page, scope: str = "#curate-list") -> list[str]:
    return page.locator(f"{scope} .result .caption").all_text_contents()


@pytest.mark.parametrize("width", [1280, 800])
def test_near_duplicate_groups_threshold_sort_and_export(server, browser, shots, width):
    context, page, errors = open_page(browser, width)
    page.goto(f"{server.url}/p/demo")
    page.click("#curate-link")
    expect(page).to_have_url(f"{server.url}/p/demo/curate")
    wait_list(page)
    expect(page.locator("#tab-duplicates")).to_have_attribute("aria-selected", "true")
    group = page.locator(".dup-group").first
    expect(group.locator(".dup-head")).to_contain_text("keep: the largest resolution")
    assert group.locator(".result .caption").all_text_contents() == ["animaux/chat.jpg", "chat-petit.jpg"]
    expect(group.locator(".result.kept .badge.keep")).to_have_text("keep")
    similarity = float(group.locator(".result:not(.kept) .score").text_content())
    assert 0.75 <= similarity < 1
    expect(group.locator(".result:not(.kept) .pixels")).to_contain_text("pixels ")  # a resized copy: ~1.00
    # the byte copy is known by its hash, whatever the threshold
    expect(page.locator("#exact-copies")).to_be_visible()
    expect(page.locator("#exact-list")).to_contain_text("café.jpg")
    expect(page.locator("#list-description")).to_contain_text("at similarity ≥ 0.75")
    page.screenshot(path=str(shots / f"curate-duplicates-{width}.png"), full_page=True)

    # a stricter threshold: no group, said so; the URL keeps it
    page.fill("#threshold", "0.999")
    page.click("#curate-apply")
    wait_list(page)
    expect(page.locator("#list-empty")).to_contain_text("No near duplicates at similarity ≥ 1.00")
    assert "threshold=0.999" in page.url and page.locator(".dup-group").count() == 0
    page.go_back()
    wait_list(page)
    assert page.locator(".dup-group").count() >= 1 and page.input_value("#threshold") == "0.75"

    # a looser one, sorted by name: more groups, in the order of the kept images' paths
    page.fill("#threshold", "0.6")
    page.click("#curate-apply")
    wait_list(page)
    page.select_option("#curate-sort", "name")
    wait_list(page)
    kept = [
        page.locator(".dup-group").nth(i).locator(".result.kept .caption").text_content()
        for i in range(page.locator(".dup-group").count())
    ]
    assert len(kept) >= 1 and kept == sorted(kept)

    # tick everything but the kept images and export them: the project's export route writes the CSV
    page.fill("#threshold", "0.8")
    page.click("#curate-apply")
    wait_list(page)
    page.click("#select-extra")
    expect(page.locator("#selection-count")).to_have_text("1 selected")
    with page.expect_download() as info:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert [r["path"] for r in rows] == ["chat-petit.jpg"]
    expect(page.locator("#export-done")).to_have_text("Exported 1 image as CSV.")
    assert not errors, errors
    context.close()


def test_outliers_sorted_and_paged(server, browser, shots):
    context, page, errors = open_page(browser, 1280)
    page.goto(f"{server.url}/p/demo/curate")
    wait_list(page)
    page.click("#tab-outliers")
    wait_list(page)
    assert "tab=outliers" in page.url
    expect(page.locator("#threshold")).to_be_hidden()
    expect(page.locator("#k")).to_be_visible()
    page.select_option("#page-size", "12")
    wait_list(page)
    expect(page.locator("#page-info")).to_have_text("1–12 of 21")  # 20 photos and the small cat
    scores = [float(x) for x in page.locator("#curate-list .score").all_text_contents()]
    assert len(scores) == 12 and scores == sorted(scores, reverse=True)
    page.screenshot(path=str(shots / "curate-outliers-1280.png"), full_page=True)
    page.click("#next")
    wait_list(page)
    expect(page.locator("#page-info")).to_have_text("13–21 of 21")
    later = [float(x) for x in page.locator("#curate-list .score").all_text_contents()]
    assert len(later) == 9 and max(later) <= min(scores)
    expect(page.locator("#next")).to_be_disabled()
    page.select_option("#curate-sort", "name")
    wait_list(page)
    names = captions(page)
    assert names == sorted(names) and page.locator("#page-info").text_content() == "1–12 of 21"
    # a bad k is refused in the page, with what to do
    page.fill("#k", "0")
    page.click("#curate-apply")
    expect(page.locator("#error")).to_contain_text("k = 0 is out of range")
    assert not errors, errors
    context.close()


@pytest.mark.parametrize("width", [1280, 800])
def test_label_errors_of_a_dataset(server, browser, shots, width):
    context, page, errors = open_page(browser, width)
    page.goto(f"{server.url}/datasets/mini")
    page.click("#dataset-curate-link")
    wait_list(page)
    page.click("#tab-label-errors")
    page.fill("#k", "1")
    page.click("#curate-apply")
    wait_list(page)
    assert captions(page) == ["cat/a.jpg", "cat/b.jpg"]
    first = page.locator("#curate-list .result").first
    expect(first.locator(".given")).to_have_text("cat")
    expect(first.locator(".suggested")).to_have_text("dog")
    expect(first.locator(".agreement")).to_have_text("100 % agree")
    expect(first.locator(".split-pill")).to_have_text("train")
    page.screenshot(path=str(shots / f"curate-label-errors-{width}.png"), full_page=True)
    page.select_option("#curate-sort", "label")
    wait_list(page)
    assert captions(page) == ["cat/a.jpg", "cat/b.jpg"]  # given labels cat, then dog
    # the dataset's groups say when their labels differ; a dataset has no "save as dataset"
    page.click("#tab-duplicates")
    wait_list(page)
    expect(page.locator(".dup-group").first.locator(".badge-warn")).to_have_text("labels differ")
    assert page.locator("#export-dataset").count() == 0
    page.locator(".dup-group").first.locator("input.pick").first.check()
    with page.expect_download() as info:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert rows[0]["path"] == "cat/a.jpg" and rows[0]["keep"] == "yes"
    # another embedding model available here: the dataset is embedded with it, its lists follow
    page.select_option("#curate-model", shared.TINY)
    wait_list(page)
    assert f"model={shared.TINY}" in page.url
    expect(page.locator("#list-description")).to_contain_text(f"vectors of {shared.TINY}")
    assert not errors, errors
    context.close()


def click_cell(page, true: str, predicted: str) -> None:
    """Click the heatmap's cell (true, predicted) where Plotly drew it."""
    box = page.evaluate(
        """([t, p]) => {
          const el = document.querySelector('#chart-confusion');
          const L = el._fullLayout, x = L.xaxis, y = L.yaxis, r = el.getBoundingClientRect();
          return {x: r.left + x._offset + x.l2p(x.d2l(p)), y: r.top + y._offset + y.l2p(y.d2l(t))};
        }""",
        [true, predicted],
    )
    page.mouse.click(box["x"], box["y"])


@pytest.mark.parametrize("width", [1280, 800])
def test_click_a_confusion_cell_to_see_its_images(server, browser, shots, width):
    context, page, errors = open_page(browser, width)
    page.goto(f"{server.url}/runs/probe-pets")
    page.wait_for_selector("#chart-confusion .nsewdrag")
    expect(page.locator("#cell-pairs button")).to_have_text(["cat → dog (2)", "dog → owl (1)"])
    click_cell(page, "cat", "dog")
    page.wait_for_function("() => document.querySelectorAll('#cell-images .result').length === 2")
    expect(page.locator("#cell-title")).to_have_text("True cat, predicted dog")
    expect(page.locator("#cell-meta")).to_contain_text("2 images of the test split")
    assert captions(page, "#cell-images") == ["cat/test-2.png", "cat/test-3.png"]
    first = page.locator("#cell-images .result").first
    assert first.locator(".prob .prob-label").all_text_contents() == ["dog", "cat (true)", "owl"]
    assert first.locator(".prob-value").all_text_contents() == ["70.0 %", "15.0 %", "15.0 %"]
    expect(first.locator(".prob.true .prob-value")).to_have_text("15.0 %")
    assert "true=cat" in page.url and "predicted=dog" in page.url
    page.locator("#cell-browser").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / f"run-cell-{width}.png"), full_page=True)
    # the least probable true class first, then another cell from the list of mistakes
    page.select_option("#cell-sort", "p_true")
    page.wait_for_function("() => document.querySelector('#cell-images .caption').textContent === 'cat/test-2.png'")
    page.click("#cell-pairs button:has-text('dog → owl')")
    page.wait_for_function("() => document.querySelectorAll('#cell-images .result').length === 1")
    assert captions(page, "#cell-images") == ["dog/test-3.png"]
    # a reload opens the same cell
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#cell-images .result').length === 1")
    expect(page.locator("#cell-title")).to_have_text("True dog, predicted owl")
    # a correct cell too: the diagonal
    click_cell(page, "owl", "owl")
    page.wait_for_function("() => document.querySelectorAll('#cell-images .result').length === 4")
    expect(page.locator("#cell-title")).to_have_text("owl, predicted correctly")
    assert not errors, errors
    context.close()


def test_a_run_evaluated_before_predictions_were_kept(server, browser, shots):
    context, page, errors = open_page(browser, 1280)
    page.goto(f"{server.url}/runs/old-probe")
    page.wait_for_selector("#chart-confusion .nsewdrag")
    click_cell(page, "cat", "dog")
    expect(page.locator("#cell-note")).to_be_visible()
    expect(page.locator("#cell-note-message")).to_contain_text("has no per-image predictions")
    expect(page.locator("#cell-note-hint")).to_contain_text("vitrine eval old-probe --split test")
    assert page.locator("#cell-images .result").count() == 0
    page.locator("#cell-browser").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "run-cell-old-1280.png"))
    expect(page.locator("#cell-evaluate")).to_be_visible()  # the button: a job on a real run (next test)
    assert not errors, errors
    assert CLASSES == ["cat", "dog", "owl"]
    context.close()


def test_evaluate_again_from_the_page(server, browser):
    context, page, errors = open_page(browser, 1280)
    page.goto(f"{server.url}/runs/colours-probe?true=red&predicted=red")
    expect(page.locator("#cell-note-message")).to_contain_text("has no per-image predictions")
    page.click("#cell-evaluate")
    page.wait_for_function("() => document.querySelectorAll('#cell-images .result').length === 3", timeout=60_000)
    expect(page.locator("#cell-note")).to_be_hidden()
    expect(page.locator("#cell-title")).to_have_text("red, predicted correctly")
    assert sorted(captions(page, "#cell-images")) == [f"red/test-{i}.png" for i in range(3)]
    assert not errors, errors
    context.close()


def test_a_large_group_shows_its_first_images_then_all(server, browser):
    context, page, errors = open_page(browser, 1280)
    page.goto(f"{server.url}/p/demo/curate?threshold=0.3")
    wait_list(page)
    expect(page.locator("#pixels")).to_be_checked()
    heads = page.locator(".dup-head").all_text_contents()
    largest_checked = max((int(re.search(r"(\d+) images", t).group(1)) for t in heads), default=0)
    page.uncheck("#pixels")  # the vectors alone: at 0.3 most of the demo chains into one group
    wait_list(page)
    assert "pixels=0" in page.url
    group = page.locator(".dup-group").first
    more = group.locator(".dup-more")
    expect(more).to_be_visible()
    total = int(more.text_content().split()[2])  # "Show all N images of this group"
    assert total > 12 and group.locator(".result").count() == 12
    sizes = [int(re.search(r"(\d+) images", t).group(1)) for t in page.locator(".dup-head").all_text_contents()]
    assert sizes[0] == total and total > largest_checked  # pictures alike in content, not copies
    page.click("#select-extra")  # every image of the page's groups but the kept ones, drawn or not
    expect(page.locator("#selection-count")).to_have_text(f"{sum(sizes) - len(sizes)} selected")
    more.click()
    assert group.locator(".result").count() == total
    assert group.locator("input.pick:checked").count() == total - 1
    assert not errors, errors
    context.close()
