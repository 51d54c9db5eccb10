"""The dashboard end to end: `fitlens dashboard` serving real sweeps from a real store, every page opened in
headless Chromium (Debian's chromium and chromedriver, driven by Selenium), key content checked, the browser
console free of errors, and a screenshot of each page saved (FITLENS_SCREENSHOTS=folder keeps them; the
README's come from there)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tests.commands import FITLENS, env, free_port, start_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


@pytest.fixture(scope="module")
def served(init_study, overfit_sweep, study_store: Path) -> Iterator[tuple[str, dict]]:
    """The dashboard over the store holding the init study, the overfit sweep, a gradient check and a run whose
    name and tags carry markup."""
    uri = f"sqlite:///{study_store / 'mlflow.db'}"
    done = subprocess.run([FITLENS, "gradcheck", "--json", "--tracking-uri", uri, "model.depth=1", "model.width=8",
                           "data.name=moons", "--steps", "5"], env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    gradcheck_run = done.stdout.strip().splitlines()[-1].split('"run_id": "')[1][:32]
    client = MlflowClient(uri)
    hostile = client.create_run(client.get_experiment_by_name("fitlens").experiment_id, run_name=HOSTILE,
                                tags={"note": HOSTILE})
    client.log_metric(hostile.info.run_id, "dev/error", float("nan"))
    client.set_terminated(hostile.info.run_id)
    port = free_port()
    server = start_server([FITLENS, "dashboard", "--port", str(port), "--tracking-uri", uri], port)
    runs = {
        "init": init_study[1], "overfit": overfit_sweep[1], "gradcheck": gradcheck_run,
        "hostile": hostile.info.run_id, "uri": uri,
    }
    yield f"http://127.0.0.1:{port}", runs
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed for the browser test: run `make browser` "
                    "(Debian's chromium and chromium-driver packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


# Figures still to be drawn (each is drawn in a task of its own after the page's text, dashboard/app.py): for each,
# its id, whether it is on the page, and whether it has a draw waiting.
UNDRAWN_FIGURES = """return Array.from(document.querySelectorAll('.dash-graph:not(:has(.main-svg))')).map(g => {
    const gd = g.querySelector('.js-plotly-plot') || g;
    return [g.id, gd.isConnected, Boolean(gd.fitlensPending)]; });"""


def open_page(browser, url: str, expect: str, timeout: float = 60) -> str:
    """Load `url`, wait until the page's text contains `expect`, nothing is loading and every figure is drawn;
    return the text."""
    browser.get(url)
    deadline = time.monotonic() + timeout
    text, undrawn = "", []
    while time.monotonic() < deadline:
        text = browser.find_element("tag name", "body").text
        loading = browser.find_elements("css selector", "[data-dash-is-loading='true']")
        undrawn = browser.execute_script(UNDRAWN_FIGURES)
        if expect in text and not loading and not undrawn:
            time.sleep(0.5)  # the last figures settle
            return browser.find_element("tag name", "body").text
        time.sleep(0.3)
    raise AssertionError(f"{url}: {expect!r} never appeared with every figure drawn (undrawn: [id, on the page, "
                         f"waiting to draw] {undrawn}); the page says:\n{text[:3000]}")


# Traces Plotly found no module for (a type missing from the cartesian bundle the dashboard loads): their types.
UNDRAWN_TRACES = """return Array.from(document.querySelectorAll('.js-plotly-plot'))
    .flatMap(gd => (gd._fullData || []).filter(t => !t._module).map(t => t.type));"""
# The polyfill's trimming and parsing count U+180E as whitespace, the browser's own do not (both report
# "[native code]" from toString: core-js makes its replacements say so). The names of those still the polyfill's.
NOT_NATIVE = """const s = '\\u180e';
const kept = {'String.prototype.trim': s.trim(), 'String.prototype.trimStart': s.trimStart(),
  'String.prototype.trimEnd': s.trimEnd(), 'String.prototype.trimLeft': s.trimLeft(),
  'String.prototype.trimRight': s.trimRight(), parseInt: parseInt(s + '1'), parseFloat: parseFloat(s + '1'),
  'Number.parseInt': Number.parseInt(s + '1'), 'Number.parseFloat': Number.parseFloat(s + '1')};
return Object.keys(kept).filter(name => typeof kept[name] === 'string' ? kept[name] !== s : !isNaN(kept[name]));"""


def console_errors(browser) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(browser, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FITLENS_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(max(height, 900), 6000))
    assert browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a page, not a blank
    return path


def pages(runs: dict) -> list[tuple[str, str, str]]:
    """(screenshot name, path, text that shows the page's content has rendered)."""
    init, overfit = runs["init"], runs["overfit"]
    trials = init["trials"]
    by_init = {(t["point"]["model"]["init"], t["point"]["model.activation"]): t["run_id"] for t in trials}
    best = init["best_run_id"]
    return [
        ("home", "/", "init-sweep"),
        ("sweep", f"/sweep/{init['parent_run_id']}", "Hyperparameter importance"),
        ("run", f"/run/{best}", "The basic recipe, in order"),
        ("layers", f"/layers/{by_init[('normal', 'tanh')]}?compare={by_init[('he', 'tanh')]}",
         "Depth profile at step 0"),
        ("regularization", f"/regularization/{overfit['parent_run_id']}", "reg.l2 = 30 gives the lowest dev error"),
        ("optimization", f"/optimization/{init['parent_run_id']}", "Update-to-weight ratio"),
        ("gradcheck", f"/gradcheck/{runs['gradcheck']}", "relative difference"),
    ]


def test_every_page_renders_its_content_with_a_clean_console(served, browser, tmp_path) -> None:
    base, runs = served
    for name, path, expect in pages(runs):
        text = open_page(browser, base + path, expect)
        assert "this view failed" not in text, f"{path}: {text[:2000]}"
        assert browser.find_elements("css selector", ".js-plotly-plot") or name == "home", f"{path}: no figure"
        assert console_errors(browser) == [], f"{path}: {console_errors(browser)}"
        assert browser.execute_script(UNDRAWN_TRACES) == [], f"{path}: traces the Plotly bundle cannot draw"
        assert browser.execute_script(NOT_NATIVE) == [], f"{path}: the polyfill's functions are still in place"
        screenshot(browser, name, tmp_path)
    # the sweep page's table has a row per trial (named by its trial id), and the zeros trials' flags
    text = open_page(browser, f"{base}/sweep/{runs['init']['parent_run_id']}", "Hyperparameter importance")
    assert [t["trial_id"] for t in runs["init"]["trials"] if t["trial_id"] not in text] == []
    assert "identical_units" in text


@pytest.mark.parametrize(("path", "expect"), [
    ("/run/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "is not a run id"),
    ("/layers/..%2F..%2Fetc%2Fpasswd", "is not a run id"),
    ("/run/" + "0" * 32, "no such run"),
    ("/no/such/page", "no page at"),
])
def test_bad_urls_get_a_notice_not_a_server_error(served, browser, path: str, expect: str) -> None:
    base, _ = served
    text = open_page(browser, base + path, expect)
    assert "Traceback" not in text and "Internal Server Error" not in text
    assert console_errors(browser) == []


def test_markup_in_run_names_and_tags_renders_inert(served, browser) -> None:
    base, runs = served
    text = open_page(browser, base + "/", "init-sweep")
    assert HOSTILE.split(">")[0] in text  # shown as the text it is
    assert browser.title != "pwned"
    text = open_page(browser, f"{base}/run/{runs['hostile']}", "Run ")
    assert browser.title != "pwned"
    assert "Traceback" not in text


def test_an_open_page_shows_a_running_runs_new_points_without_a_reload(served, browser) -> None:
    """Live: while a run trains, its open page picks up new points on the refresh interval; the page is never
    reloaded (a marker set in the window survives)."""
    base, runs = served
    client = MlflowClient(runs["uri"])
    run_id = client.create_run(client.get_experiment_by_name("fitlens").experiment_id,
                               run_name="live-run").info.run_id  # RUNNING until set_terminated

    def log(step: int, train: float, dev: float) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("train/error", train, now, step), Metric("dev/error", dev, now, step)])

    log(0, 0.50, 0.60)
    open_page(browser, f"{base}/run/{run_id}", "dev 60.0%")
    browser.execute_script("window.fitlensMarker = 42")
    log(1, 0.20, 0.25)
    open_page_text = ""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and "dev 25.0%" not in open_page_text:
        time.sleep(0.5)
        open_page_text = browser.find_element("tag name", "body").text
    client.set_terminated(run_id)
    assert "dev 25.0%" in open_page_text, open_page_text[:2000]
    assert browser.execute_script("return window.fitlensMarker") == 42


def test_the_diagnosis_opens_a_run_page_and_its_evidence_opens_the_layers_view(served, browser, tmp_path) -> None:
    """A zero-initialized trial of the init study, in the browser: the diagnosis is the first section, drawn above
    the bias/variance recipe; its first finding is the symmetry with a random init as the action; following a
    piece of its evidence opens the layers view at that layer and step."""
    base, runs = served
    zeros = next(t["run_id"] for t in runs["init"]["trials"] if t["point"]["model"]["init"] == "zeros")
    open_page(browser, f"{base}/run/{zeros}", "The basic recipe, in order")
    headings = browser.find_elements("css selector", ".section > h3, .section > h2, .section > h4")
    titles = [h.text for h in headings]
    assert titles[0] == "Diagnosis", titles
    recipe = next(h for h in headings if h.text.startswith("Bias"))
    assert headings[0].location["y"] < recipe.location["y"]
    first = browser.find_element("css selector", ".finding[data-rank='1']")
    assert first.get_attribute("data-cause") == "symmetry"
    assert "model.init" in first.text and "identical" in first.text.lower()
    assert console_errors(browser) == []
    screenshot(browser, "run-diagnosis", tmp_path)
    link = next(a for a in first.find_elements("css selector", "a") if "layers view" in a.text)
    query = dict(part.split("=", 1) for part in link.get_attribute("href").split("?", 1)[1].split("&"))
    link.click()  # a client-side route: the layers page's controls set from the link's query
    expect = f"Depth profile at step {query['at']}" if "at" in query else "Depth profile"
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline and not (f"/layers/{zeros}" in browser.current_url and expect in text):
        time.sleep(0.3)
        text = browser.find_element("tag name", "body").text
    assert f"/layers/{zeros}" in browser.current_url and expect in text, text[:2000]
    if "layer" in query:
        assert query["layer"] in browser.find_element("css selector", ".controls").text
    assert console_errors(browser) == []
