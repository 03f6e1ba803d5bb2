"""The web page at /ui in a real Chromium (Debian's, driven by Playwright), as a person uses it:
one worker and two servers on one database, one with API keys and one without."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import srt
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.main import create_app
from app.settings import Settings
from tests.conftest import MODEL_DIR
from tests.e2e.conftest import serve, worker_thread
from tests.firefox import Firefox

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
KEY = "ui-key-3b9f1c7e5a"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def site(tmp_path_factory, model_cache) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("ui")
    settings = Settings(
        _env_file=None, db_url=f"sqlite:///{folder / 'ui.db'}", media_dir=folder / "media",
        model_dir=MODEL_DIR, device="cpu", compute_type="int8", hub_allowed=False,
        media_retention_seconds=3600, api_keys=KEY, workers=0, warm_up=False,
    )  # fmt: skip
    with (
        worker_thread(settings, model_cache),
        serve(create_app(settings)) as keyed,
        serve(create_app(settings.model_copy(update={"api_keys": None}))) as open_,
    ):
        yield SimpleNamespace(keyed=keyed, open=open_, done=None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    """A fresh tab that fails the test on any console error or uncaught exception."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    yield page
    context.close()
    assert page.errors == []  # type: ignore[attr-defined]


def _current_word(page: Page) -> dict:
    return page.evaluate(
        """() => {
            const words = document.querySelectorAll('[aria-current="true"]');
            const w = words[0];
            return {count: words.length, start: +w.dataset.start, end: +w.dataset.end,
                    time: document.querySelector('audio').currentTime};
        }"""
    )


def _player_ready(page: Page) -> None:
    page.wait_for_function("document.querySelector('[data-testid=player]').readyState >= 1")


def test_with_a_key_a_person_uploads_watches_reads_plays_renames_and_exports(
    site, page, sample_wav
):
    page.goto(f"{site.keyed}/ui")
    key = page.get_by_test_id("api-key-input")
    key.fill("not-the-key")
    key.press("Enter")
    expect(page.get_by_text("Invalid API key")).to_be_visible()
    page.errors.clear()  # the refused key's 401 is logged by the browser
    key.fill(KEY)
    key.press("Enter")

    page.get_by_test_id("upload-input").set_input_files(sample_wav)
    page.get_by_test_id("language").fill("en")
    page.get_by_test_id("num-speakers").fill("2")
    page.get_by_test_id("submit").click()
    page.wait_for_url("**/ui/task/*")
    identifier = page.url.rsplit("/", 1)[1]
    status = page.get_by_test_id("task-status")
    expect(status).to_have_text("processing", timeout=60_000)
    expect(page.locator("#task-stage")).to_contain_text("%")
    page.reload()  # the progress survives a reload; the transcript then appears by itself
    expect(status).to_have_text("completed", timeout=120_000)
    site.done = identifier

    segments = page.get_by_test_id("segment")
    expect(segments.first).to_be_visible()
    speakers = {segments.nth(i).get_attribute("data-speaker") for i in range(segments.count())}
    assert speakers == {"SPEAKER_00", "SPEAKER_01"}
    colours = page.eval_on_selector_all(
        "[data-testid=segment]",
        "ns => [...new Set(ns.map(n => n.style.getPropertyValue('--speaker')))]",
    )
    assert sorted(colours) == ["#56B4E9", "#E69F00"]  # Okabe–Ito
    words = page.get_by_test_id("word")
    assert words.count() > 40
    # the player has the task's audio from the server (a reload forgot the page's copy)
    assert "/audio?expires=" in page.get_by_test_id("player").get_attribute("src")
    _player_ready(page)

    page.locator("#speed").select_option("2")
    word = words.nth(30)
    word.click()
    start = float(word.get_attribute("data-start"))
    assert page.evaluate("document.querySelector('audio').currentTime") == pytest.approx(start, abs=0.01)  # fmt: skip
    assert word.get_attribute("aria-current") == "true"
    page.evaluate("document.querySelector('audio').muted = true")
    page.keyboard.press(" ")
    page.wait_for_function("document.querySelector('audio').currentTime > %f" % (start + 1.5))
    now = _current_word(page)
    assert now["count"] == 1 and now["start"] - 0.5 <= now["time"] <= now["end"] + 0.5, now
    page.keyboard.press(" ")
    assert page.evaluate("document.querySelector('audio').paused")
    assert page.evaluate("document.querySelector('audio').playbackRate") == 2
    paused_at = page.evaluate("document.querySelector('audio').currentTime")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.querySelector('audio').currentTime") == pytest.approx(paused_at - 5, abs=0.05)  # fmt: skip

    name = page.locator("[data-testid=speaker-name][data-label=SPEAKER_01]").first
    name.click()
    page.locator(".speaker-input").fill("Diane")
    page.locator(".speaker-input").press("Enter")
    expect(page.locator("[data-testid=speaker-name][data-label=SPEAKER_01]").first).to_have_text(
        "Diane"
    )
    page.reload()
    renamed = page.locator(
        "[data-testid=segment][data-speaker=SPEAKER_01] [data-testid=speaker-name]"
    )
    expect(renamed.first).to_have_text("Diane")
    assert set(renamed.all_text_contents()) == {"Diane"}

    with page.expect_download() as download:
        page.get_by_test_id("export-srt").click()
    srt = Path(download.value.path()).read_text()
    assert "-->" in srt and "[Diane]" in srt and "SPEAKER_01" not in srt
    assert download.value.suggested_filename == "sample.srt"
    with page.expect_download() as download:
        page.get_by_test_id("export-json").click()
    assert '"Diane"' in Path(download.value.path()).read_text()


def _completed_task(site, wav: Path) -> str:
    """The task the first test uploaded, or one made now through the API."""
    if site.done:
        return site.done
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=site.keyed, headers=headers, timeout=60) as client:
        identifier = client.post(
            "/speech-to-text?language=en", files={"file": ("sample.wav", wav.read_bytes())}
        ).json()["identifier"]
        deadline = time.monotonic() + 240
        while client.get(f"/task/{identifier}?wait=30").json()["status"] != "completed":
            assert time.monotonic() < deadline
    site.done = identifier
    return identifier


def test_without_keys_the_list_opens_a_task_that_can_be_searched_corrected_and_exported(
    site, page, sample_wav
):
    identifier = _completed_task(site, sample_wav)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{site.open}/ui")
    row = page.locator(f"[data-testid=task-row][data-identifier='{identifier}']")
    expect(row.get_by_test_id("task-status")).to_have_text("completed")
    expect(row).to_contain_text("sample.wav")
    expect(row).to_contain_text("0:30")
    expect(row).to_contain_text("2 speakers")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    row.locator("a").click()
    page.wait_for_url(f"**/ui/task/{identifier}")
    expect(page.get_by_test_id("segment").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")

    page.locator("#search").fill("chicago")
    visible = page.locator("[data-testid=segment]:visible")
    expect(page.locator("#search-count")).to_contain_text("segment")
    assert 0 < visible.count() < page.get_by_test_id("segment").count()
    assert all("chicago" in t.lower() for t in visible.all_text_contents())
    page.locator("#search").fill("")

    segment = page.get_by_test_id("segment").nth(1)
    segment.locator(".edit").click()
    segment.locator("textarea").fill("Oh hello there, I did not know you were around")
    segment.get_by_role("button", name="Save").click()
    edited = page.get_by_test_id("segment").nth(1)
    expect(edited.locator(".text")).to_have_text("Oh hello there, I did not know you were around")
    spans = edited.get_by_test_id("word")
    expect(spans).to_have_count(10)
    _player_ready(page)
    spans.nth(5).click()
    assert page.evaluate("document.querySelector('audio').currentTime") == pytest.approx(
        float(spans.nth(5).get_attribute("data-start")), abs=0.01
    )
    with page.expect_download() as download:
        page.get_by_test_id("export-txt").click()
    assert "I did not know you were around" in Path(download.value.path()).read_text()
    page.get_by_test_id("cue-layout").select_option(label="1 line × 32 (phone)")
    with page.expect_download() as download:
        page.get_by_test_id("export-srt").click()
    cues = list(srt.parse(Path(download.value.path()).read_text()))
    assert len(cues) > 4 and all("\n" not in c.content and len(c.content) <= 32 for c in cues)
    assert page.get_by_test_id("export-vtt").get_attribute("download") == "sample.vtt"
    original = httpx.get(f"{site.open}/task/{identifier}?original=true").json()
    assert "did not know" not in str(original["result"])

    # back to the list: cancel a running task, then delete both
    running = httpx.post(
        f"{site.open}/speech-to-text?language=en&diarize=false",
        files={"file": ("second.wav", sample_wav.read_bytes())},
    ).json()["identifier"]
    page.get_by_role("link", name="Tasks").click()
    second = page.locator(f"[data-testid=task-row][data-identifier='{running}']")
    second.get_by_role("button", name="Cancel").click()
    expect(second.get_by_test_id("task-status")).to_have_text("failed", timeout=30_000)
    for row_id in (running, identifier):
        page.locator(f"[data-testid=task-row][data-identifier='{row_id}']").get_by_role(
            "button", name="Delete"
        ).click()
        expect(page.locator(f"[data-identifier='{row_id}']")).to_have_count(0)
    expect(page.get_by_text("No tasks yet.")).to_be_visible()
    assert httpx.get(f"{site.open}/task/{identifier}").status_code == 404


def test_while_a_long_task_is_transcribed_its_page_shows_the_text_so_far(site, page, long_wav):
    # a window a batch: the text grows window by window while the page watches
    identifier = httpx.post(
        f"{site.open}/speech-to-text?language=en&diarize=false&batch_size=1",
        files={"file": ("long.wav", long_wav.read_bytes())},
    ).json()["identifier"]
    page.goto(f"{site.open}/ui/task/{identifier}")
    partial = page.get_by_test_id("partial-text")
    expect(partial).to_contain_text("Hello", timeout=60_000)
    expect(page.get_by_test_id("task-status")).to_have_text("processing")
    page.locator("#cancel-task").click()
    expect(page.get_by_test_id("task-status")).to_have_text("failed", timeout=30_000)
    expect(partial).to_be_hidden()
    assert httpx.delete(f"{site.open}/task/{identifier}").status_code == 200


def test_in_firefox_a_person_uploads_reads_plays_and_renames(site, sample_wav):
    """The same page in Debian's Firefox ESR (WebDriver BiDi), on a phone-sized screen."""
    firefox = Firefox(width=390, height=844)
    try:
        firefox.goto(f"{site.open}/ui")
        firefox.set_files("[data-testid=upload-input]", str(sample_wav))
        firefox.evaluate("document.querySelector('[data-testid=language]').value = 'en'")
        firefox.click("[data-testid=submit]")
        firefox.wait_for("location.pathname.startsWith('/ui/task/')")
        firefox.wait_for("document.querySelector('[data-testid=task-status]')?.textContent === 'completed'", 180)  # fmt: skip
        speakers = firefox.evaluate(
            "[...new Set([...document.querySelectorAll('[data-testid=segment]')].map(s => s.dataset.speaker))].sort()"
        )
        assert speakers == ["SPEAKER_00", "SPEAKER_01"]
        assert firefox.evaluate("document.documentElement.scrollWidth <= innerWidth")
        firefox.wait_for("document.querySelector('[data-testid=player]').readyState >= 1")

        word = "[data-testid=word]:nth-of-type(3)"
        start = firefox.evaluate(f"+document.querySelector('{word}').dataset.start")
        firefox.click(word)
        assert firefox.evaluate("document.querySelector('audio').currentTime") == pytest.approx(start, abs=0.01)  # fmt: skip
        firefox.evaluate("document.querySelector('audio').muted = true")
        firefox.type(" ")  # space plays; the highlighted word follows the audio
        firefox.wait_for(f"document.querySelector('audio').currentTime > {start + 1.5}")
        now = firefox.evaluate(
            "(() => { const w = document.querySelectorAll('[aria-current=\"true\"]'); return {count: w.length,"
            " start: +w[0].dataset.start, end: +w[0].dataset.end, time: document.querySelector('audio').currentTime}; })()"
        )  # fmt: skip
        assert now["count"] == 1 and now["start"] - 0.5 <= now["time"] <= now["end"] + 0.5, now
        firefox.type(" ")
        assert firefox.evaluate("document.querySelector('audio').paused")

        firefox.click("[data-testid=speaker-name][data-label=SPEAKER_00]")
        firefox.evaluate("document.querySelector('.speaker-input').value = ''")
        firefox.type("Sheila\ue007")
        firefox.wait_for(
            "[...document.querySelectorAll('[data-testid=segment][data-speaker=SPEAKER_00] [data-testid=speaker-name]')]"
            ".every(n => n.textContent === 'Sheila')"
        )  # fmt: skip
        identifier = firefox.evaluate("location.pathname.split('/').pop()")
        stored = httpx.get(f"{site.open}/task/{identifier}").json()["result"]["segments"]
        assert {s["speaker"] for s in stored} == {"Sheila", "SPEAKER_01"}
        assert firefox.errors == [], firefox.errors
    finally:
        firefox.close()
