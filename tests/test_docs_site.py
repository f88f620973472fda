"""The documentation site builds in strict mode, and no page has a broken link or image.

Two checks of the built site: every local ``href`` / ``src`` of every page resolves to a file
and every ``#anchor`` to an element id of its target (static, HTML parsing); and every page,
served over HTTP and opened in headless Chromium, loads all its images and finds every
same-site link it fetches (status 200, anchor present in the fetched page).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
pytestmark = pytest.mark.slow  # a strict mkdocs build, and Chromium on every page


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


class Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) is not None and (tag, key) in {
                ("a", "href"),
                ("img", "src"),
                ("link", "href"),
                ("script", "src"),
            }:
                self.refs.append((tag, a[key]))


@functools.cache
def parse(path: Path) -> Refs:
    p = Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def test_every_page_of_the_nav_is_built(site):
    import yaml

    class Loader(yaml.SafeLoader):  # mkdocs.yml names a Python function (the mermaid fence format)
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)["nav"]

    def files(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for n in node:
                yield from files(n)
        elif isinstance(node, dict):
            for v in node.values():
                yield from files(v)

    expected = {f.replace(".md", ".html") for f in files(nav)}
    assert expected <= {p.name for p in pages(site)}
    assert {"config.html", "hooks.html", "api.html", "ptyrad-users.html", "authoring.html"} <= expected
    api = (site / "api.html").read_text(encoding="utf-8")
    for name in (
        "ptyrad_core.engine.loop.Reconstruction",
        "ptyrad_core.kernel.data.Loader",
        "ptyrad_core.kernel.forward.ForwardExtension",
    ):
        assert f'id="{name}"' in api, f"API page lacks {name}"


def test_the_architecture_diagram_is_a_mermaid_block(site):
    """docs/architecture.md's ```mermaid fence reaches the page as the block mkdocs-material draws."""
    page = (site / "architecture.html").read_text(encoding="utf-8")
    block = re.search(r'<pre class="mermaid"><code>(.*?)</code></pre>', page, flags=re.S)
    assert block and block.group(1).startswith("flowchart") and "kernel" in block.group(1)


def test_no_broken_local_link_image_or_anchor(site):
    broken = []
    for page in pages(site):
        for tag, ref in parse(page).refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or ref.startswith(("mailto:", "javascript:")):
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: <{tag}> {ref} (no file)")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in parse(target).ids
            ):
                broken.append(f"{page.relative_to(site)}: <{tag}> {ref} (no id {parts.fragment!r})")
    assert not broken, "\n".join(broken)


CHECK_JS = """
window.addEventListener('load', async () => {
  const here = new URL(location.href);
  const broken = [];
  const seen = new Map();
  for (const a of document.querySelectorAll('a[href]')) {
    const url = new URL(a.getAttribute('href'), here);
    if (url.origin !== here.origin) continue;
    const page = url.origin + url.pathname;
    if (!seen.has(page)) {
      seen.set(page, fetch(page)
        .then(async r => r.ok ? new DOMParser().parseFromString(await r.text(), 'text/html') : null)
        .catch(() => null));
    }
    const doc = await seen.get(page);
    if (!doc) { broken.push(a.getAttribute('href') + ' (not found)'); continue; }
    const id = decodeURIComponent(url.hash.slice(1));
    if (id && !doc.getElementById(id)) broken.push(a.getAttribute('href') + ' (no anchor)');
  }
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(res => { i.onload = i.onerror = res; })));
  const loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const report = {links: seen.size, broken, images: imgs.length, loaded};
  document.body.setAttribute('data-linkcheck', JSON.stringify(report));
});
"""


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium not installed (apt-get install -y chromium)"
)
def test_every_page_loads_in_chromium_without_broken_links_or_images(site, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(site, served)
    (served / "_linkcheck.js").write_text(CHECK_JS)
    for page in pages(served):
        text = page.read_text(encoding="utf-8")
        page.write_text(
            text.replace("</body>", '<script src="/_linkcheck.js"></script></body>'), encoding="utf-8"
        )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def check(page: Path) -> dict | None:
        url = f"http://127.0.0.1:{server.server_port}/{page.relative_to(served).as_posix()}"
        cmd = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout
        m = re.search(r"data-linkcheck=\"([^\"]*)\"", out)
        return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")) if m else None

    try:
        # a control page: the check must see a missing page, a missing anchor and a missing image
        control = served / "_control.html"
        control.write_text(
            '<html><body><a href="nope.html">a</a><a href="index.html#no-such-id">b</a>'
            '<a href="index.html">c</a><img src="missing.png">'
            '<script src="/_linkcheck.js"></script></body></html>'
        )
        result = check(control)
        assert (
            result is not None
            and len(result["broken"]) == 2
            and (result["images"], result["loaded"]) == (1, 0)
        ), result
        control.unlink()
        failures, checked = [], 0
        for page in pages(served):
            result = check(page)
            if result is None:
                failures.append(f"{page.name}: the check did not finish")
                continue
            checked += result["links"]
            if result["broken"] or result["loaded"] != result["images"]:
                failures.append(f"{page.name}: {result}")
        assert not failures, "\n".join(failures)
        assert checked > 50  # the pages do link to each other
    finally:
        server.shutdown()


def test_the_ptyrad_page_names_every_mapped_option():
    from ptyrad_core_plugins import compat_ptyrad as C

    page = (ROOT / "docs" / "ptyrad-users.md").read_text()
    names = [
        *C.LOSSES,
        *C.LOSSES.values(),
        *C.UPDATES,
        *C.UPDATES.values(),
        *C.CALIBRATION,
        *C.CALIBRATION.values(),
        *C.READERS.values(),
        *C.LOADERS.values(),
    ]
    missing = sorted(
        {n for n in names if not re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)|\.{re.escape(n)}`", page)}
    )
    assert not missing, f"docs/ptyrad-users.md does not mention {missing}"
