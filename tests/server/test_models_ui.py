"""The models page (/models) in headless Chromium: the registry's models grouped by task, and for
an embedding model the CPU runtime saved for this machine (picked variant, speed against the
reference, parity figures; every trial in a disclosure, a refused one with the gate's reason), or
the command that measures it. Screenshots at 1280 and 800 px, with no horizontal page overflow.

The saved choice is a test fixture: a hand-made :class:`Choice` written where ``vitrine models
--bench`` saves its own (in a temporary ``VITRINE_CACHE_DIR``); its figures are invented and say
nothing about any runtime's speed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_helpers import ServerThread, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

expect = playwright_expect()

from vitrine.server.app import create_app  # noqa: E402

TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


def _saved_choice() -> None:
    """offline-concepts measured here: onnxruntime fp32 picked, openvino int8 refused by the gate,
    openvino bf16 failed to build; clip-multilingual: torch kept."""
    from vitrine.embed.runtime_choice import save_for_model
    from vitrine.runtime.choose import Choice, Trial, machine_fingerprint
    from vitrine.runtime.parity import EMBEDDING_GATE, Parity
    from vitrine.runtime.session import Variant

    def parity(recall: float, cosine: float) -> Parity:
        return Parity({"recall_at_10": recall, "mean_cosine": cosine}, dict(EMBEDDING_GATE), 64)

    torch, ort = Variant("torch", "fp32"), Variant("onnxruntime", "fp32")
    trials = [
        Trial(torch, images_per_s=100.0),
        Trial(ort, images_per_s=180.0, parity=parity(1.0, 0.99999), build_seconds=3.2),
        Trial(Variant("openvino", "int8"), parity=parity(0.812, 0.9931), build_seconds=20.5),
        Trial(Variant("openvino", "bf16"), error="RuntimeError: bf16 is not supported on this CPU"),
    ]
    choice = Choice(ort, torch, trials, machine_fingerprint(), images=64, batch=32, measured_at=time.time())
    save_for_model("offline-concepts", "0123456789abcdef", choice)
    # clip-multilingual: every variant refused, torch kept
    trials = [Trial(torch, images_per_s=20.0), Trial(Variant("openvino", "int8"), parity=parity(0.7, 0.95))]
    kept = Choice(torch, torch, trials, machine_fingerprint(), images=64, batch=32, measured_at=time.time())
    save_for_model("clip-multilingual", "fedcba9876543210", kept)


def test_the_models_page_shows_the_runtime_choice(browser, shots, tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_CACHE_DIR", str(tmp_path / "cache"))
    _saved_choice()
    root = tmp_path / "workspace"
    root.mkdir()
    with ServerThread(create_app(root), health_path="/api/v1/health") as server:
        for width in (1280, 800):
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            try:
                page.goto(server.url + "/")
                page.click("#nav-models")
                expect(page).to_have_url(server.url + "/models")
                expect(page.locator("#models")).to_have_attribute("aria-busy", "false")
                # grouped by task
                for task, model in (("embedding", "offline-concepts"), ("classification", "efficientnet-lite0")):
                    expect(page.locator(f"#models-{task} tr[data-model='{model}']").first).to_be_visible()
                expect(page.locator("#models-embedding tr[data-model='efficientnet-lite0']")).to_have_count(0)
                row = page.locator("tr.runtime-row[data-model='offline-concepts']")
                line = row.locator(".runtime-line")
                expect(line.locator(".runtime-picked")).to_have_text("onnxruntime fp32")
                expect(line).to_contain_text("1.80x torch fp32")
                expect(line).to_contain_text("recall@10 1.000")
                expect(line).to_contain_text("mean cosine 1.0000")
                expect(line).not_to_contain_text("[object")
                # every trial, behind a disclosure
                trials = row.locator(".runtime-trials")
                expect(trials.locator("table")).to_be_hidden()
                trials.locator("summary").click()
                refused = trials.locator("tr[data-variant='openvino int8']")
                expect(refused).to_contain_text("refused")
                expect(refused).to_contain_text("recall_at_10 0.812 < 0.95")
                expect(refused).to_contain_text("0.812")
                failed = trials.locator("tr[data-variant='openvino bf16']")
                expect(failed).to_contain_text("failed")
                expect(failed).to_contain_text("bf16 is not supported on this CPU")
                expect(trials.locator("tr[data-variant='onnxruntime fp32']")).to_contain_text("picked")
                expect(trials.locator("tr[data-variant='onnxruntime fp32']")).to_contain_text("180.0")
                expect(trials.locator(".runtime-machine")).to_contain_text(" x")
                kept = page.locator("tr.runtime-row[data-model='clip-multilingual'] .runtime-line")
                expect(kept.locator(".runtime-picked")).to_have_text("torch fp32")
                expect(kept).to_contain_text("the reference: no variant was both at parity and faster")
                # a model with no saved choice says how to measure it
                other = page.locator("tr.runtime-row[data-model='clip-vit-b-32']")
                expect(other).to_contain_text("not measured on this machine: run vitrine models --bench clip-vit-b-32")
                page.screenshot(path=str(shots / f"models-{width}.png"), full_page=True)
                overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert overflow <= 1, f"the page scrolls sideways by {overflow} px at {width} px"
            finally:
                context.close()
            assert not errors, f"JavaScript errors at {width} px: {errors}"
