"""Screenshots of an e-mail's HTML part in headless Chromium (Debian's ``chromium`` package).

Used to check what a person sees (tests, the demo's rendered example): the ``cid:`` images of the
message are inlined as ``data:`` URIs, the page is written to a temporary file and Chromium takes a
screenshot of it at a phone's width, with networking features off and a throw-away profile. There
is no network here anyway; nothing the page refers to lies outside the file.

``make ensure-chromium`` installs the browser (``apt-get install chromium``); without it
:func:`screenshot_html` raises :class:`ChromiumMissing`, never silently skips.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from email.message import EmailMessage
from pathlib import Path

PHONE_WINDOW = (420, 1800)
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
          "--disable-extensions", "--mute-audio")


class ChromiumMissing(RuntimeError):
    """No ``chromium`` on PATH: run ``make ensure-chromium``."""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def html_part(message: EmailMessage) -> EmailMessage:
    """The ``text/html`` part of a message (the first one)."""
    for part in message.walk():
        if part.get_content_type() == "text/html":
            return part  # type: ignore[return-value]
    raise ValueError("the message has no text/html part")


def inline_images(message: EmailMessage) -> str:
    """The HTML part with every ``cid:`` reference replaced by a ``data:`` URI of its image part."""
    html = html_part(message).get_content()
    for part in message.walk():
        content_id = part.get("Content-ID")
        if content_id and part.get_content_maintype() == "image":
            data = base64.b64encode(part.get_content()).decode("ascii")
            html = html.replace(f"cid:{content_id.strip().strip('<>')}", f"data:{part.get_content_type()};base64,{data}")
    return html


def screenshot_html(html: str, out: Path, *, window: tuple[int, int] = PHONE_WINDOW, timeout_s: float = 120) -> Path:
    """Render ``html`` in headless Chromium and write a PNG screenshot of ``window`` pixels to ``out``."""
    browser = chromium_path()
    if browser is None:
        raise ChromiumMissing("chromium is not installed: run `make ensure-chromium` "
                              "(apt-get install chromium)")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-shot-") as work:
        page = Path(work) / "message.html"
        page.write_text(html, encoding="utf-8")
        profile = Path(work) / "profile"
        shot = Path(work) / "shot.png"
        command = [browser, *_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                   f"--window-size={window[0]},{window[1]}", page.as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "HOME": work})
        if done.returncode != 0 or not shot.exists():
            raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        shutil.move(str(shot), out)
    return out


__all__ = ["ChromiumMissing", "PHONE_WINDOW", "chromium_path", "html_part", "inline_images", "screenshot_html"]
