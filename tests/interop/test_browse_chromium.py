"""The browse UI end to end in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright): folders, messages, conversations, search, downloads, remote images, a
hostile message whose scripts must never run, keyboard navigation, a phone screen.

Screenshots go to ``test-output/browse/``. With ``AXSYNC_UPDATE_DOC_SCREENSHOTS=1`` the
ones docs/browse.md shows are copied to ``docs/img/`` as well.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from archive.conftest import PDF, Built, build_archive, corpus_mails, sample_mails

from axsync.archive.access import Archive
from axsync.browse.server import Running
from axsync.statedb import StateDB

from .dovecot import interop_required

pytestmark = pytest.mark.interop

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "browse"
DOC_SHOTS = {"01-inbox.png": "browse-inbox.png", "03-thread.png": "browse-thread.png",
             "06-phone-message.png": "browse-phone.png"}


def _unavailable() -> str | None:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is missing (Debian package chromium; run ./.ci/setup-system)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Built:
    reason = _unavailable()
    if reason:
        if interop_required():
            pytest.fail(f"browse interop test cannot run: {reason}")
        pytest.skip(reason)
    mails, roles = corpus_mails(120, seed=3)
    samples = sample_mails()
    built = build_archive(tmp_path_factory.mktemp("browse"), [*mails, *samples.values()],
                          roles=roles)
    offset = len(mails)
    built.names = {n: built.uids[offset + i] for i, n in enumerate(samples)}
    return built


@pytest.fixture(scope="module")
def ui(archive: Built) -> Iterator[Running]:
    opened = Archive.open(archive.account, shared=True)
    with Running(opened, "work") as running:
        yield running
    opened.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == []  # our own script never fails


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))
    if os.environ.get("AXSYNC_UPDATE_DOC_SCREENSHOTS") == "1" and name in DOC_SHOTS:
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHOTS / name, ROOT / "docs" / "img" / DOC_SHOTS[name])


def expect(target: Any) -> Any:
    """Playwright's retrying assertions: a click starts a navigation, and a plain
    ``is_visible()`` right after it may still see the page being left."""
    from playwright.sync_api import expect as pw_expect

    return pw_expect(target)


def body_frame(page: Any) -> Any:
    page.wait_for_selector("iframe.body")
    frame = page.frame_locator("iframe.body")
    frame.locator("body").wait_for()
    return page.frames[1]


def test_open_pick_a_folder_and_read(page: Any, ui: Running) -> None:
    page.goto(ui.url)
    assert page.locator(".list-head h2").inner_text() == "INBOX"
    assert page.locator(".messages li").count() == 50
    page.locator(".messages li:has(.clip) a").first.click()  # one with attachments
    expect(page.locator(".attachments li").first).to_be_visible()
    body_frame(page)
    shot(page, "01-inbox.png")
    page.locator(".folders a.folder", has_text="2024").first.click()
    expect(page.locator(".list-head h2")).to_have_text("Archive/2024")
    first = page.locator(".messages li a").first
    subject = first.locator(".subject").inner_text()
    first.click()
    expect(page.locator("h1.subject")).to_have_text(subject)
    expect(page.locator(".messages li.selected")).to_have_count(1)
    body_frame(page)
    shot(page, "02-message.png")


def test_conversation(page: Any, ui: Running, archive: Built) -> None:
    page.goto(f"{ui.url}message/{archive.names['t2']}")
    page.get_by_role("link", name="Conversation (3)").click()
    expect(page.locator(".thread details.card")).to_have_count(3)
    assert "third" in page.locator(".thread details.card").nth(2).inner_text()
    db = StateDB.open(archive.db_path, readonly=True)
    cid, uid, count = db.execute(
        "SELECT conversation_id, max(uid), count(*) FROM messages WHERE conversation_id IS NOT "
        "NULL GROUP BY 1 HAVING sum(from_addr GLOB '*[^ -~]*') = 0 "  # no CJK font here
        "ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()
    db.close()
    page.goto(f"{ui.url}thread/{uid}")
    assert page.locator(".thread details.card").count() == count >= 3
    shot(page, "03-thread.png")


def test_search(page: Any, ui: Running) -> None:
    page.goto(ui.url)
    page.fill("#search", "kiwi")
    page.press("#search", "Enter")
    page.wait_for_url("**/?q=kiwi")
    rows = page.locator(".messages li")
    assert rows.count() == 2 and "Kiwi harvest report" in rows.first.inner_text()
    assert page.locator(".messages mark").first.inner_text().lower() == "kiwi"
    page.fill("#search", "(broken")
    page.press("#search", "Enter")
    expect(page.locator(".query-error")).to_contain_text("unbalanced parenthesis")
    page.fill("#search", 'from:mallory has:attachment')
    page.press("#search", "Enter")
    expect(page.locator(".messages li")).to_have_count(1)
    shot(page, "04-search.png")


def test_download_attachment(page: Any, ui: Running, archive: Built) -> None:
    page.goto(f"{ui.url}message/{archive.names['hostile']}")
    with page.expect_download() as info:
        page.locator(".attachments a", has_text="report.pdf").click()
    download = info.value
    assert download.suggested_filename == "report.pdf"
    assert Path(download.path()).read_bytes() == PDF
    with page.expect_download() as info:
        page.locator(".attachments a", has_text="passwd").click()
    assert info.value.suggested_filename == "passwd"


def test_remote_images_only_on_request(page: Any, ui: Running, archive: Built) -> None:
    fetched: list[str] = []

    def tracker(route: Any) -> None:
        fetched.append(route.request.url)
        route.fulfill(status=200, content_type="image/gif",
                      body=bytes.fromhex("47494638396101000100000000003b"))

    page.route("**/tracker.example.net/**", tracker)
    page.goto(f"{ui.url}message/{archive.names['hostile']}")
    frame = body_frame(page)
    assert frame.locator("img[alt=logo]").evaluate("img => img.naturalWidth") == 1  # cid: image
    assert frame.locator("img[src*=tracker]").count() == 0
    page.wait_for_timeout(300)
    assert fetched == []
    page.locator("#show-images").click()
    expect(page.frame_locator("iframe.body").locator("img[src*=tracker]")).to_have_count(1)
    page.wait_for_timeout(300)
    assert any("open.gif" in url for url in fetched)
    expect(page.locator("#hide-images")).to_be_visible()


def test_hostile_message_scripts_never_run(page: Any, ui: Running, archive: Built) -> None:
    uid = archive.names["hostile"]
    page.goto(f"{ui.url}message/{uid}")
    frame = body_frame(page)
    assert "Hostile body marker" in frame.locator("body").inner_text()
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert frame.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("h1.subject").inner_text() == "Hostile <script>alert(1)</script> & friends"
    # Even opened on its own (not in the sandboxed frame) the body runs no script.
    page.goto(f"{ui.url}message/{uid}/body")
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.title() != "pwned"
    # An HTML attachment is downloaded, never rendered on this origin.
    page.goto(ui.url)
    with page.expect_download():
        page.evaluate(f"location.href = '/message/{uid}/part/6'")


def test_keyboard_navigation(page: Any, ui: Running) -> None:
    page.goto(ui.url)
    first, second = (page.locator(".messages li a").nth(i).get_attribute("href") for i in (0, 1))
    page.keyboard.press("j")
    page.wait_for_url(f"**{first}")
    page.keyboard.press("j")
    page.wait_for_url(f"**{second}")
    page.keyboard.press("k")
    page.wait_for_url(f"**{first}")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"


def test_phone(browser: Any, ui: Running) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(ui.url)
        expect(page.locator(".messages")).to_be_visible()
        expect(page.locator(".reader")).to_be_hidden()
        assert page.locator(".folders").bounding_box()["x"] < 0  # the drawer is closed
        shot(page, "05-phone-list.png")
        page.locator(".messages li a").first.click()
        expect(page.locator("h1.subject")).to_be_visible()
        expect(page.locator(".messages")).to_be_hidden()
        body_frame(page)
        shot(page, "06-phone-message.png")
        page.locator(".reader-nav a.back").click()
        expect(page.locator(".messages")).to_be_visible()
        expect(page.locator(".reader")).to_be_hidden()
        page.locator(".menu-button").click()
        page.wait_for_timeout(300)
        assert page.locator(".folders").bounding_box()["x"] >= 0
        shot(page, "07-phone-folders.png")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than the screen
    finally:
        context.close()
