"""`colorjax serve`: the app on a real uvicorn server on 127.0.0.1, its limits, its worker."""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import random_variables
from PIL import Image
from skimage import color as skcolor

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from colorjax.models import build_model  # noqa: E402
from colorjax.serve import app as serve_app  # noqa: E402
from colorjax.serve.pool import ModelPool, Offer, offers_from  # noqa: E402
from colorjax.serve.worker import QueueFull, Worker  # noqa: E402
from colorjax.weights import save_weights  # noqa: E402

PLAIN, HINTED = "tiny.safetensors", "sig.safetensors"
LIMITS = serve_app.Limits(max_bytes=2_000_000, max_pixels=600_000, max_waiting=4)


def photo(h: int = 48, w: int = 80, seed: int = 1) -> np.ndarray:
    """A textured colour photo (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            128 + 90 * np.sin(xx / 9.0),
            128 + 90 * np.cos(yy / 7.0),
            128 + 60 * np.sin((xx + yy) / 11),
        ],
        -1,
    )
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def lightness(rgb: np.ndarray) -> np.ndarray:
    """CIE L from scikit-image: the independent reference for "L kept"."""
    return skcolor.rgb2lab(rgb.astype(np.float64) / 255.0)[..., 0]


def chroma(rgb: np.ndarray) -> np.ndarray:
    lab = skcolor.rgb2lab(rgb.astype(np.float64) / 255.0)
    return np.hypot(lab[..., 1], lab[..., 2])


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A classification ColorNet and a hint-taking SIGGRAPH17 net, random but finite."""
    folder = tmp_path_factory.mktemp("serve-weights")
    tiny = build_model("colornet-tiny-cls")
    save_weights(
        folder / PLAIN, "colornet-tiny-cls", {}, random_variables(tiny, 32), {"working_size": 32}
    )
    sig = build_model("zhang-siggraph17")
    save_weights(
        folder / HINTED, "zhang-siggraph17", {}, random_variables(sig, 16), {"working_size": 64}
    )
    return folder


def start_server(app) -> tuple[object, threading.Thread, str]:  # noqa: ANN001
    """uvicorn on 127.0.0.1 and a free port, in a thread; returns (server, thread, base URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(weights_dir):
    offers = [
        Offer("tiny", str(weights_dir / PLAIN)),
        Offer("sig", str(weights_dir / HINTED)),
    ]
    srv, thread, base = start_server(serve_app.make_app(ModelPool(offers), LIMITS))
    yield base
    srv.should_exit = True
    thread.join(timeout=30)


def request(
    base: str, path: str, body: bytes | None = None, declared: int | None = None, **query
) -> tuple[int, dict | str]:
    """(status, JSON or text) of one request.

    declared: a Content-Length to announce instead of the body's (the body then is not sent:
    a server refusing it by its size answers at once, with nothing left unread).
    """
    import http.client

    host, port = base.removeprefix("http://").split(":")
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        conn.putrequest("POST" if body is not None else "GET", url)
        if body is not None:
            conn.putheader("Content-Length", str(declared or len(body)))
        conn.endheaders()
        if body is not None and declared is None:
            try:
                conn.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server has answered already; its answer is waiting
        res = conn.getresponse()
        status, text, kind = res.status, res.read().decode(), res.headers["content-type"]
    finally:
        conn.close()
    return status, json.loads(text) if "json" in (kind or "") else text


def test_page_and_model_list(server):
    status, page = request(server, "/")
    assert status == 200 and "colorjax" in page and 'type="file"' in page
    status, body = request(server, "/api/models")
    assert status == 200
    assert body["models"] == [
        {"name": "tiny", "takes_hints": False},
        {"name": "sig", "takes_hints": True},
    ]


def test_colorize_keeps_l_and_gives_colour(server):
    rgb = photo()
    status, body = request(server, "/api/colorize", png_bytes(rgb), model="tiny")
    assert status == 200, body
    colour, gray = decode_data_url(body["colour"]), decode_data_url(body["gray"])
    assert colour.shape == gray.shape == rgb.shape and (body["width"], body["height"]) == (80, 48)
    # L of the result and of the gray view equal the upload's (8-bit rounding apart).
    assert np.abs(lightness(colour) - lightness(rgb)).max() < 1.0
    assert np.abs(lightness(gray) - lightness(rgb)).max() < 1.0
    assert chroma(gray).max() < 1.5  # the gray view is gray
    assert chroma(colour).mean() > 3.0  # and the result is not


def test_hints_recolour_and_are_refused_by_models_without_them(server):
    png = png_bytes(photo())
    _, plain = request(server, "/api/colorize", png, model="sig")
    status, hinted = request(server, "/api/colorize", png, model="sig", hints="40,24,#ff0000")
    assert status == 200, hinted
    assert not np.array_equal(decode_data_url(plain["colour"]), decode_data_url(hinted["colour"]))
    status, body = request(server, "/api/colorize", png, model="tiny", hints="40,24,#ff0000")
    assert status == 400 and "takes no colour hints" in body["error"]
    status, body = request(server, "/api/colorize", png, model="sig", hints="400,24,#ff0000")
    assert status == 400 and "outside the 80x48 image" in body["error"]


@pytest.mark.parametrize(
    ("body", "query", "status", "message"),
    [
        (b"not an image", {}, 400, "cannot read the photo"),
        (b"", {}, 400, "no photo in the request"),
        (b"", {"declared": 2_000_001}, 413, "over this server's limit of 2.0 MB"),
        (None, {}, 413, "megapixels), over this server's limit of 0.6"),
        (None, {"model": "../../etc/passwd"}, 400, "unknown model '../../etc/passwd'"),
        (None, {"hints": "1,2"}, 400, "bad hint"),
    ],
)
def test_bad_requests_get_one_clear_message(server, body, query, status, message):
    if body is None:
        big = query == {}
        body = png_bytes(np.zeros((1000, 800, 3), np.uint8) if big else photo())
        query = query or {"model": "tiny"}
        if "hints" in query:
            query["model"] = "sig"
    got, answer = request(server, "/api/colorize", body, **query)
    assert got == status and message in answer["error"], answer


def test_a_client_leaving_mid_upload_harms_nothing(server):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            "POST /api/colorize?model=tiny HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"\x89PNG" + b"\0" * 5000)  # then hang up
    status, body = request(server, "/api/colorize", png_bytes(photo()), model="tiny")
    assert status == 200, body


def test_worker_runs_jobs_in_order_and_refuses_when_full():
    worker = Worker(max_waiting=2)
    gate = threading.Event()
    order = []
    first = worker.submit(lambda: (gate.wait(10), order.append(1)))
    while not first.running():
        time.sleep(0.01)
    queued = [worker.submit(lambda i=i: order.append(i)) for i in (2, 3)]
    with pytest.raises(QueueFull):
        worker.submit(lambda: None)
    gate.set()
    for future in (first, *queued):
        future.result(timeout=10)
    assert order == [1, 2, 3]
    failing = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    worker.close()


def test_pool_offers_only_what_it_was_given(weights_dir):
    pool = ModelPool(offers_from([str(weights_dir / PLAIN)], []))
    with pytest.raises(Exception, match="unknown model 'colornet-lite2-cls4.tinyimagenet'"):
        pool.get("colornet-lite2-cls4.tinyimagenet")
    with pytest.raises(Exception, match="no model to serve"):
        ModelPool([])


def test_an_exported_model_serves_what_its_weights_serve(weights_dir, tmp_path):
    from colorjax import cli

    artefact = tmp_path / "tiny.jaxexport"
    assert (
        cli.main(["export", str(weights_dir / PLAIN), "--out", str(artefact), "--platforms", "cpu"])
        == 0
    )
    pool = ModelPool(offers_from([str(weights_dir / PLAIN)], [str(artefact)]))
    assert pool.names == [str(weights_dir / PLAIN), "tiny.jaxexport"]
    png = png_bytes(photo())
    from_weights = serve_app.colorize_job(pool, pool.names[0], png, None)
    from_artefact = serve_app.colorize_job(pool, "tiny.jaxexport", png, None)
    np.testing.assert_array_equal(
        decode_data_url(from_artefact["colour"]), decode_data_url(from_weights["colour"])
    )


def test_each_model_compiles_once_per_bucket_across_requests(weights_dir):
    pool = ModelPool([Offer("tiny", str(weights_dir / PLAIN))])
    for seed in (1, 2, 3):  # three requests, three photos of one size
        serve_app.colorize_job(pool, "tiny", png_bytes(photo(seed=seed)), None)
    colorizer, _ = pool.get("tiny")
    assert colorizer.num_compilations == 1
    assert pool.get("tiny")[0] is colorizer  # loaded once, shared


def test_serve_binds_loopback_by_default():
    from colorjax import cli

    args = cli.build_parser("serve").parse_args(["serve"])
    assert args.host == "127.0.0.1"


# ------------------------------------------------------------------------- in a real browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import serve_screenshot  # noqa: E402 - the README screenshot's browser flags, one list


def chromium_driver():
    """Headless Debian Chromium through Selenium, or a skip saying what is missing."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver")
    browser = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    driver_bin = shutil.which("chromedriver") or (
        CHROMEDRIVER if Path(CHROMEDRIVER).exists() else None
    )
    if not browser or not driver_bin:
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver to run it")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*serve_screenshot.FLAGS, "--window-size=1100,900"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_bin)
    return webdriver.Chrome(options=options, service=service)


def wait_for_done(driver, count: int, timeout: float = 240) -> None:  # noqa: ANN001
    """Wait until the page has shown `count` results (body[data-done]) or shows an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = driver.execute_script("return Number(document.body.dataset.done || 0)")
        error = driver.find_element("id", "error").text
        assert not error, error
        if done >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the page showed {done} results, not {count}")


def test_in_a_real_browser_upload_colorize_and_hint(server, tmp_path):
    from selenium.webdriver.support.ui import Select

    rgb = photo(96, 160, seed=4)
    path = tmp_path / "upload.png"
    Image.fromarray(rgb).save(path)
    driver = chromium_driver()
    try:
        driver.get(server + "/")
        deadline = time.monotonic() + 120
        while driver.find_element("id", "status").text != "ready":
            assert time.monotonic() < deadline, driver.find_element("id", "status").text
            time.sleep(0.1)
        driver.find_element("id", "file").send_keys(str(path))
        wait_for_done(driver, 1)
        colour = decode_data_url(driver.find_element("id", "colour").get_attribute("src"))
        assert colour.shape == rgb.shape
        assert np.abs(lightness(colour) - lightness(rgb)).max() < 1.0
        assert chroma(colour).mean() > 3.0
        assert driver.find_element("id", "download").get_attribute("href").startswith("data:")
        # The hint-taking model: choosing it re-colorizes; a click on the photo adds a hint.
        Select(driver.find_element("id", "model")).select_by_value("sig")
        wait_for_done(driver, 2)
        plain = decode_data_url(driver.find_element("id", "colour").get_attribute("src"))
        assert driver.find_element("id", "hintbar").is_displayed()
        driver.execute_script("document.getElementById('hint-colour').value = '#ff0000'")
        driver.find_element("id", "compare").click()  # the centre of the photo
        wait_for_done(driver, 3)
        hinted = decode_data_url(driver.find_element("id", "colour").get_attribute("src"))
        assert np.abs(lightness(hinted) - lightness(rgb)).max() < 1.0
        assert not np.array_equal(hinted, plain)
        # A bad file shows the server's message in the page.
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"not a photo")
        driver.find_element("id", "file").send_keys(str(bad))
        deadline = time.monotonic() + 60
        while "cannot read the photo" not in driver.find_element("id", "error").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        driver.quit()
