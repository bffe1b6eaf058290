"""The README's screenshot of `colorjax serve`: a photo uploaded in headless Chromium, then shot.

Starts the server with the bundled weights on a free port of 127.0.0.1, opens the page in
Debian's Chromium through Selenium, uploads the photo, waits for the result and saves a
screenshot (PNG, or JPEG by the suffix):

    python tools/serve_screenshot.py ../shared/data/bsds500/test/100007.jpg --out docs/serve.jpg
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image

# Headless, and quiet: this machine's network is closed, so no background connections.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def main() -> int:
    """Serve, upload, wait, shoot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", default=None, help="weights to serve (default: bundled)")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=760)
    parser.add_argument("--slider", type=int, default=50, help="before/after split, percent")
    args = parser.parse_args()

    from selenium import webdriver

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "colorjax.cli", "serve", "--port", str(port)]
    if args.weights:
        command += ["--weights", args.weights]
    server = subprocess.Popen(command)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--window-size={args.width},{args.height}"):
        options.add_argument(flag)
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(base + "/api/models", timeout=300).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.5)
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService("/usr/bin/chromedriver")
        )
        driver.get(base + "/")
        driver.find_element("id", "file").send_keys(str(args.photo.resolve()))
        while driver.execute_script("return Number(document.body.dataset.done || 0)") < 1:
            error = driver.find_element("id", "error").text
            if error:
                raise SystemExit(f"the page says: {error}")
            time.sleep(0.2)
        driver.execute_script(
            "const s = document.getElementById('slider'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input'));",
            args.slider,
        )
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        jpeg = args.out.suffix.lower() in (".jpg", ".jpeg")
        shot.save(args.out, **({"quality": 85} if jpeg else {}))
        print(f"wrote {args.out} ({shot.width}x{shot.height})")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
