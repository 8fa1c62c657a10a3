"""End to end: the playground page (/playground) in a real headless Chromium, driven with selenium,
against `promptsvc dev` as a subprocess.

The browser is Debian's `chromium` with its `chromium-driver`; `scripts/browser` installs them
(`scripts/test` runs it before pytest). Without them this test fails, saying so: it does not skip.
The page is typed into like a user would: a key, a prompt (sent with the button, then with
Ctrl+Enter), a cancel. The mock engine echoes the rendered prompt (the model's template around
it), slowly enough here that a long prompt can be canceled while it streams. Also: the page's
headers (no key needed, a Content-Security-Policy naming the WebSocket API), and the page without
a WebSocket URL (it reads the prompt until it ends). The screenshot is saved under pytest's
temporary directory (its path is printed; `-s` shows it; `playground-last.png` after any test).
"""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.conftest import DevServer, call, dev_server

pytestmark = pytest.mark.e2e

WAIT = 40.0  # for any one thing the page shows: generous, the machine is shared
CHUNKS = 100  # the mock streams a prompt in up to 100 pieces, 0.05 s apart: the long one takes ~5 s
QUICK = "What is a banana?"
SLOW = "Tell me everything about bananas, their history, their botany and their trade. " * 4


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(mock_chunk_delay=0.05, env={"MOCK_CHUNKS": str(CHUNKS)}) as started:
        yield started


def chromium() -> WebDriver:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "the playground test needs Debian's chromium and chromium-driver on PATH "
            f"(chromium: {browser}, chromedriver: {driver}): run scripts/browser (scripts/test does)"
        )
    options = Options()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,2400", "--lang=en-US"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "playground-last.png"))
        driver.quit()


def wait(driver: WebDriver, what: str, condition: Callable[[WebDriver], Any]) -> Any:
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition)
    except TimeoutException:
        errors = text(driver, "errors")
        status = text(driver, "status")
        pytest.fail(f"the page did not show {what} within {WAIT:g} s (status {status!r}, errors {errors!r})")


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).get_attribute("textContent") or ""


def closed(driver: WebDriver) -> bool:
    """The shown prompt's closing status event has come: its answer will not change."""
    return driver.find_element(By.ID, "answer").get_attribute("data-closed") == "true"


def turns(driver: WebDriver) -> list[list[str]]:
    """The thread's turns on the page: [prompt id, status, prompt, answer], read in one go (the page
    re-renders the list as events arrive)."""
    return driver.execute_script(
        """return Array.from(document.querySelectorAll("#turns > li"), (li) => [
             li.dataset.promptId, li.dataset.status,
             li.querySelector(".turn-prompt").textContent, li.querySelector(".turn-answer").textContent])"""
    )


def recent(driver: WebDriver) -> dict[str, str]:
    """The recent prompts on the page: prompt id -> status."""
    rows = driver.execute_script(
        """return Array.from(document.querySelectorAll("#recent tbody tr"),
             (tr) => [tr.dataset.promptId, tr.querySelector(".recent-status").textContent])"""
    )
    return dict(rows)


def expected_echo(server: DevServer, key: str, model_id: str, prompt: str) -> str:
    """What the mock engine answers: the prompt rendered with the model's template."""
    models = call(server, key, "GET", "/prompt-svc/models").json()["models"]
    template = next(model["template"] for model in models if model["id"] == model_id)
    return template.replace("{prompt}", prompt)


def test_the_page_is_static_unauthenticated_and_locked_down(server: DevServer) -> None:
    page = httpx.get(server.base_url + "/playground", timeout=10)
    script = httpx.get(server.base_url + "/playground/app.js", timeout=10)
    style = httpx.get(server.base_url + "/playground/style.css", timeout=10)
    other = httpx.get(server.base_url + "/playground/secrets.json", timeout=10)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert other.status_code == 401  # nothing else under /playground is open
    policy = page.headers["content-security-policy"]
    ws_origin = server.ws_url.rstrip("/")
    assert f"connect-src 'self' {ws_origin}" in policy
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert f'content="{server.ws_url}"' in page.text  # the page is told where the WebSocket API is
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline for the CSP to allow
    assert "/playground" not in call(server, "nokey", "GET", "/openapi.json").text  # not in the contract


def test_send_stream_cancel_and_see_the_thread(
    server: DevServer, users: dict[str, str], browser: WebDriver, tmp_path: Path
) -> None:
    key = users["alice"]
    driver = browser
    driver.get(server.base_url + "/playground")
    assert driver.find_element(By.ID, "ws-url").get_attribute("value") == server.ws_url
    unlabeled = driver.execute_script(
        "return Array.from(document.querySelectorAll('input, select, textarea'))"
        ".filter((control) => control.labels.length === 0).map((control) => control.id)"
    )
    assert unlabeled == []  # every control has its label
    live = driver.find_element(By.ID, "answer").get_attribute("aria-live")
    assert live == "polite"  # the streamed answer is read out as it grows

    # The key, then the models it may use.
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "use-key").click()
    wait(driver, "the models", lambda d: d.find_element(By.ID, "send").is_enabled())
    catalog = call(server, key, "GET", "/prompt-svc/models").json()
    choice = Select(driver.find_element(By.ID, "model"))
    assert [option.get_attribute("value") for option in choice.options] == [
        m["id"] for m in catalog["models"]
    ]
    assert choice.first_selected_option.get_attribute("value") == catalog["defaultModelId"]
    model_id = catalog["models"][-1]["id"]
    choice.select_by_value(model_id)

    # A prompt: its answer streams in, in pieces, and ends whole.
    driver.find_element(By.ID, "prompt").send_keys(QUICK)
    driver.find_element(By.ID, "send").click()
    wait(driver, "the first prompt completed", lambda d: text(d, "status") == "completed")
    first_id = text(driver, "prompt-id")
    thread_id = driver.find_element(By.ID, "thread").get_attribute("value")
    stored = call(server, key, "GET", f"/prompt-svc/prompt/{first_id}").json()
    assert stored["prompt"]["status"] == "completed"
    assert stored["prompt"]["threadId"] == thread_id
    assert stored["prompt"]["modelId"] == model_id
    answer = expected_echo(server, key, model_id, QUICK)
    assert stored["answer"] == answer
    wait(driver, "the stream closed", closed)
    assert text(driver, "answer") == answer
    assert int(driver.find_element(By.ID, "answer").get_attribute("data-deltas") or 0) >= 2  # streamed

    # A slow one on the same thread, sent from the keyboard, canceled while it streams.
    prompt = driver.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys(SLOW)
    prompt.send_keys(Keys.CONTROL, Keys.ENTER)
    wait(
        driver, "the slow prompt streaming", lambda d: text(d, "prompt-id") != first_id and text(d, "answer")
    )
    slow_id = text(driver, "prompt-id")
    driver.find_element(By.ID, "cancel").click()
    wait(driver, "the slow prompt canceled", lambda d: text(d, "status") == "canceled")
    assert not driver.find_element(By.ID, "cancel").is_enabled()
    canceled = call(server, key, "GET", f"/prompt-svc/prompt/{slow_id}").json()
    assert canceled["prompt"]["status"] == "canceled"
    full = expected_echo(server, key, model_id, SLOW)
    assert full.startswith(canceled.get("answer") or "")

    # The thread's turns, oldest first, with their status and answer; the recent prompts' status.
    wait(driver, "the thread's two turns", lambda d: [t[:2] for t in turns(d)] == [
        [first_id, "completed"], [slow_id, "canceled"]
    ])  # fmt: skip
    assert turns(driver)[0][2:] == [QUICK, answer]
    # After the stream's closing event (deltas may still come after the cancel answers), the
    # canceled turn keeps what streamed before the cancel took effect.
    wait(driver, "the stream closed", closed)
    streamed = text(driver, "answer")
    assert full.startswith(streamed)
    wait(driver, "the canceled turn's answer", lambda d: turns(d)[1][2:] == [SLOW, streamed])
    wait(driver, "the recent prompts", lambda d: recent(d).get(slow_id) == "canceled")
    assert recent(driver)[first_id] == "completed"

    shot = tmp_path / "playground.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
    print(f"playground screenshot: {shot}")

    # Nothing the page did was refused by its own Content-Security-Policy, and no script failed.
    problems = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert problems == []


def test_without_a_websocket_url_the_answer_is_read_until_it_ends(
    server: DevServer, users: dict[str, str], browser: WebDriver
) -> None:
    """An API that names no WebSocket API (WEBSOCKET_URL unset), or a field emptied: the page reads
    the prompt until it ends, and shows the same answer."""
    key = users["bob"]
    driver = browser
    driver.get(server.base_url + "/playground")
    ws_url = driver.find_element(By.ID, "ws-url")
    ws_url.clear()
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "use-key").click()
    wait(driver, "the models", lambda d: d.find_element(By.ID, "send").is_enabled())
    model_id = Select(driver.find_element(By.ID, "model")).first_selected_option.get_attribute("value") or ""

    driver.find_element(By.ID, "prompt").send_keys(QUICK)
    driver.find_element(By.ID, "send").click()
    wait(driver, "the prompt completed", lambda d: text(d, "status") == "completed")
    wait(driver, "the answer read", closed)
    assert text(driver, "answer") == expected_echo(server, key, model_id, QUICK)
    assert text(driver, "stream").startswith("polling")
