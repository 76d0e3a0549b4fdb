"""End to end in headless Chromium: start the studio on a free port, walk every page as a newcomer would,
fail on any exception shown, and save screenshots to test-artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A slow or busy machine makes the walk longer, not red: long waits last while the studio shows progress (see
# `until_visible`), so the overall limit only catches a walk that hangs.
pytestmark = [pytest.mark.browser, pytest.mark.real_model, pytest.mark.timeout(3600)]
STALL_S = float(os.environ.get("STUDIO_TEST_STALL_S", "240"))  # no sign of work this long: the studio is stuck
_homes: list[Path] = []  # the running studio's STUDIO_HOME, where its jobs write their events
if not Path(CHROMIUM).exists():
    pytestmark.append(pytest.mark.skip(reason="Debian chromium is not installed (apt-get install chromium)"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def embedded_model_home():
    """The repo-local STUDIO_HOME that holds the converted embedded model (converted once, then reused)."""
    home = ROOT / ".studio-home"
    subprocess.run([sys.executable, "-m", "core.models.convert", "embedded"], cwd=ROOT, check=True,
                   env={**os.environ, "STUDIO_HOME": str(home)}, stdout=subprocess.DEVNULL)
    return home


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory, embedded_model_home):
    home = tmp_path_factory.mktemp("browser-home")
    _homes.append(home)
    (home / "models").symlink_to(embedded_model_home / "models")  # the converted model, shared
    port = _free_port()
    env = {**os.environ, "STUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    log = open(home / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "studio" / "app.py"),
                               "--server.port", str(port), "--server.address", "127.0.0.1",
                               "--server.headless", "true", "--browser.gatherUsageStats", "false",
                               "--client.toolbarMode", "minimal"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("the studio did not start: " + (home / "server.log").read_text()[-2000:])
    yield url
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture(scope="module")
def page(studio_url):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(60_000)
        tab.goto(studio_url)
        yield tab
        browser.close()


def _running(page) -> bool:
    return page.locator('[data-testid="stStatusWidget"]').count() > 0


def _work_signature() -> tuple:
    """Changes whenever a background job (indexing, training, evaluation) writes an event."""
    files = [path for home in _homes for path in (home / "projects").rglob("events.jsonl")]
    return tuple(sorted((str(path), path.stat().st_size) for path in files))


def settle(page, quiet_ms: int = 1500, stall_s: float | None = None) -> None:
    """Wait until Streamlit has finished running the script (no 'Running…' widget for a while). A script run may
    take long on a busy machine; only one that shows no change for `stall_s` fails."""
    stall_s = stall_s or STALL_S
    quiet_since, last_change, signature = None, time.time(), None
    while True:
        if _running(page):
            quiet_since, last_change = None, time.time()
        elif quiet_since is None:
            quiet_since = time.time()
        elif (time.time() - quiet_since) * 1000 >= quiet_ms:
            return
        if (now := _work_signature()) != signature:
            signature, last_change = now, time.time()
        if time.time() - last_change > stall_s:
            raise AssertionError(f"the page kept running with no progress for {stall_s:.0f} s")
        page.wait_for_timeout(200)


def until_visible(page, locator, stall_s: float | None = None) -> None:
    """Wait for `locator` as long as the studio is working on it: a script run or a job writing progress events.
    Fails only after `stall_s` seconds without either, so the limit scales with the machine, not a fixed clock."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    stall_s = stall_s or STALL_S
    last_change, signature = time.time(), None
    while True:
        try:
            locator.wait_for(timeout=2_000)
            return
        except PlaywrightTimeout:
            pass
        now = _work_signature()
        if _running(page) or now != signature:
            signature, last_change = now, time.time()
        elif time.time() - last_change > stall_s:
            raise AssertionError(f"{locator} did not appear, and the studio showed no progress for {stall_s:.0f} s")


def check_page(page, name: str) -> None:
    settle(page)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{name}: exception shown: {exceptions.first.inner_text()[:500]}"


def go(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    settle(page)


def test_newcomer_walks_every_page(page):
    page.get_by_role("heading", name="Projects").wait_for()
    check_page(page, "01-projects-empty")
    page.get_by_role("button", name="Create the sample project").click()
    page.get_by_text("Open: Lumen Bikes (sample)").wait_for()
    check_page(page, "02-projects")

    go(page, "Model")
    page.get_by_text("Model card").wait_for()
    until_visible(page, page.get_by_text("Gemma3ForCausalLM").first)
    check_page(page, "03-model")

    go(page, "1 · Prompt")
    page.get_by_label("Question", exact=True).fill("Are you open on Sundays?")
    page.get_by_role("button", name="Run", exact=True).click()
    until_visible(page, page.get_by_text("prompt tokens").first)
    answer = page.locator('[data-testid="stChatMessage"]').last.inner_text()
    assert answer.strip(), "the prompt page showed no answer"
    check_page(page, "04-prompt")

    go(page, "2 · Few-shot")
    # the switch, named also by the notice below it that the examples are not used yet
    page.get_by_text("Add examples to the prompt").first.click()
    settle(page)
    page.get_by_label("Test question").fill("Can I rent a bike for a week?")
    page.keyboard.press("Enter")
    until_visible(page, page.get_by_text("tokens planned"))
    page.get_by_text("Examples used for this question").wait_for()
    page.get_by_text("tokens planned").scroll_into_view_if_needed()
    check_page(page, "05-fewshot")
    page.get_by_role("button", name="Save as new recipe version").click()
    settle(page)

    go(page, "3 · Retriever")
    # The sample's Markdown, PDF, Word and CSV documents started indexing in a background job when it was created.
    until_visible(page, page.get_by_text("Last indexing: 8 file(s)"))
    assert not page.get_by_role("button", name="Index 8 waiting file(s)").count()
    settle(page)
    # the switch, named also by the notice above it that the documents are not used yet
    page.get_by_text("Add passages from this knowledge base to the prompt").last.click()
    settle(page)
    page.get_by_role("button", name="Save as new recipe version").click()
    settle(page)
    check_page(page, "05b-retriever")

    go(page, "Retrieval test")
    page.get_by_label("Question").fill("How much is the rental deposit?")
    page.keyboard.press("Enter")
    page.get_by_text("Both, fused (hybrid)").wait_for()
    settle(page)
    check_page(page, "05c-retrieval-test")

    go(page, "Chat")
    page.get_by_placeholder("Ask the assistant").fill("How much is a basic service?")
    page.keyboard.press("Enter")
    until_visible(page, page.get_by_text("answer tokens").first)
    settle(page)
    page.get_by_text("Sources (").first.wait_for()  # the answer shows the passages it was given
    page.locator('[data-testid="stFeedback"] button').last.click()  # thumbs down
    settle(page)
    page.get_by_label("What should the answer have been? (optional)").fill("A basic service costs 45 euros.")
    page.get_by_role("button", name="Send feedback").click()
    page.get_by_text("correction saved").wait_for()
    check_page(page, "06-chat")

    go(page, "Feedback")
    page.get_by_text("Answers rated").wait_for()
    check_page(page, "07-feedback")

    go(page, "Datasets")
    page.get_by_role("tab", name="Pre-flight checks").click()
    page.get_by_role("button", name="Run checks").click()
    page.get_by_text("Length distribution").first.wait_for()
    check_page(page, "09-datasets-checks")

    go(page, "Labeling")
    page.get_by_role("button", name="Accept").click()
    settle(page)
    page.get_by_text("1 of 40 labeled").wait_for()
    page.get_by_role("button", name="Save (1)").click()
    page.get_by_text("Version 2 · changes are saved").wait_for()
    check_page(page, "10-labeling")

    go(page, "4 · Fine-tune")
    page.get_by_text("Suggested:").wait_for()
    page.get_by_role("spinbutton", name="Time limit (minutes, 0 = none)").fill("1")  # a minute keeps the walk short
    page.keyboard.press("Enter")
    settle(page)
    page.get_by_text("Training settings").click()
    page.get_by_label("Epochs").fill("1")
    page.keyboard.press("Enter")
    settle(page)
    page.get_by_role("button", name="Start training").click()
    until_visible(page, page.get_by_text("Training loss").first)  # live curve of the background job
    check_page(page, "11-finetune-running")
    until_visible(page, page.get_by_role("button", name="Attach to the recipe"))
    page.get_by_role("button", name="Attach to the recipe").click()
    settle(page)
    page.get_by_role("button", name="Detach from the recipe").wait_for()
    check_page(page, "12-finetune-adapter")

    # Every rung is set up now: a quick evaluation of two questions scores the whole ladder in the background.
    go(page, "Evaluation")
    page.get_by_text("5 of 5 variants are set up and will answer.").wait_for()
    page.get_by_text("Options", exact=True).click()
    page.get_by_text("Quick look").click()
    settle(page)
    page.get_by_label("Number of questions").fill("2")
    page.keyboard.press("Enter")
    settle(page)
    page.get_by_role("button", name="Run evaluation").click()
    until_visible(page, page.get_by_text("Which variant is enough?"))
    settle(page)
    check_page(page, "13-evaluation")
    go(page, "Labeling")

    # A Vietnamese reader switches the language in the sidebar; the page and navigation follow.
    page.get_by_label("Language / Ngôn ngữ").click()
    page.get_by_role("option", name="Tiếng Việt").click()
    settle(page)
    page.get_by_role("heading", name="Gán nhãn").wait_for()
    page.locator('[data-testid="stSidebarNav"]').get_by_text("1 · Viết prompt", exact=True).click()
    settle(page)
    page.get_by_role("heading", name="Chạy thử").wait_for()
    check_page(page, "08-prompt-vietnamese")
