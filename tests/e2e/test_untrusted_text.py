"""Attacker-controlled text is shown as text everywhere the dashboard shows it (security-reliability.md S20, S21).

Docker Desktop ran code from an extension's description and changelog (CVE-2023-0625, CVE-2024-8695), its
``publisher-url``/``additional-urls`` labels (CVE-2024-8696), image build details (CVE-2024-9348) and route
parameters (CVE-2023-0626). Here one extension image carries markup in every label and metadata field the
dashboard reads, a plain container carries it in its labels, environment and log output, and a volume in its
labels; the dashboard is opened on every view where they show up (home, sidebar, Marketplace card, images,
containers, logs, inspect, volumes, and routes whose parameters carry markup).

Chromium runs with the page's CSP bypassed, so that the proof is about the dashboard's own rendering: the CSP
(``script-src 'self'``) would block the inline handlers anyway, but markup parsed into the page would still
fetch, restyle or link. For each view: (1) the payload is visible verbatim, (2) no element the payload describes
exists (no ``<img>``/``<svg>``/``<script>``/``<iframe>`` of it, no ``on*`` attribute anywhere), (3)
``window.__pwned``, which any of the payloads sets when it runs, stays unset and nothing requests ``/pwned-*``,
(4) only http(s) URLs are links, with ``rel="noopener noreferrer"``; ``javascript:``/``data:`` URLs are text.
The long unbroken words of that text must not break the layout (no sideways scrolling, nothing sticking out of
its card). Screenshots of each view are saved in the module's tmp dir (``untrusted-shots``) to look at.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import docker
import docker.errors
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from dockext import model
from tests.support import images
from tests.support.cli import run_dockext
from tests.support.images import TEST_LABEL
from tests.support.server import Server, start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-test-untrusted"
REGISTRY = "127.0.0.1:5000"


def hostile(where: str) -> str:
    """Markup that, put into the page as HTML, sets ``window.__pwned = where`` or fetches ``/pwned-<where>``."""
    return (
        f'<img src="/pwned-{where}" onerror="window.__pwned=\'{where}\'">'
        f"</script><script>window.__pwned='{where}'</script>"
        f'<svg onload="window.__pwned=\'{where}\'"></svg>'
        f"[docs](javascript:window.__pwned='{where}')"
    )


#: one unbroken word, long enough to overflow any column that does not wrap it
LONG = "pwnedlongword" + "W" * 300
TITLE = f"Evil {hostile('title')}"
TAB = f"Tab {hostile('tab')}"
VENDOR = f"Vendor {hostile('vendor')} {LONG}"
DESCRIPTION = f'{hostile("description")} <iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>'
#: label HTML: the Marketplace shows its text (tags dropped), so markup written as entities must stay text
CHANGELOG = f"<p>Fixed &lt;img src=/pwned-changelog onerror=window.__pwned=7&gt; in</p></script>{hostile('changelog')}"
CHANGELOG_TEXT = "Fixed <img src=/pwned-changelog onerror=window.__pwned=7> in"
DETAILED = "<style>*{display:none!important}</style><p>Details &lt;svg onload=window.__pwned=8&gt;</p>"
DETAILED_TEXT = "Details <svg onload=window.__pwned=8>"
CATEGORY = "<b onmouseover=window.__pwned=9>category</b>"
SAFE_URL = "http://127.0.0.1:9/dockext-untrusted/"  # a link that is allowed (never followed by the tests)
SHOT_ALT = f"Shot {hostile('screenshot')}"
LABELS = {
    TEST_LABEL: "1",
    "org.opencontainers.image.title": TITLE,
    "org.opencontainers.image.vendor": VENDOR,
    "org.opencontainers.image.description": DESCRIPTION,
    "com.docker.extension.detailed-description": DETAILED,
    "com.docker.extension.changelog": CHANGELOG,
    "com.docker.extension.categories": f"{CATEGORY},testing-tools",
    "com.docker.extension.publisher-url": "javascript:window.__pwned='publisher'",
    "com.docker.extension.additional-urls": json.dumps([
        {"title": f"Docs {hostile('additional')}", "url": "javascript:window.__pwned='additional'"},
        {"title": "Data", "url": "data:text/html,<script>window.__pwned='data'</script>"},
        {"title": "Support", "url": SAFE_URL + "support"},
    ]),
    "com.docker.extension.screenshots": json.dumps([
        {"alt": "js", "url": "javascript:window.__pwned='shot'"},
        {"alt": "data", "url": "data:image/svg+xml,<svg onload=window.__pwned=1>"},
        {"alt": SHOT_ALT, "url": SAFE_URL + "shot.png"},
    ]),
}
#: in the Dockerfile itself: they show as the image's layer commands ("Created by") too
ENV_VALUE = hostile("env")
DOCKERFILE_LABEL = f"{PREFIX}.layer"
DOCKERFILE_LABEL_VALUE = hostile("layer")

# the plain container: labels, environment and log lines
CONTAINER_LABELS = {
    TEST_LABEL: "1",
    "com.docker.compose.service": hostile("service"),
    f"{PREFIX}.<b onclick=window.__pwned=1>key</b>": hostile("label"),
    f"{PREFIX}.long": LONG,
}
LOG_LINE = f"log {hostile('stdout')}"
ERR_LINE = f"err {hostile('stderr')}"
VOLUME_LABELS = {
    TEST_LABEL: "1",
    "com.docker.compose.project": f"proj{hostile('project')}",
    f"{PREFIX}.note": hostile("volume"),
}

INERT = """() => {
  const bad = [];
  const what = (n) => `<${n.tagName.toLowerCase()}${n.id ? "#" + n.id : ""}>`;
  for (const n of document.querySelectorAll("*")) {
    for (const a of n.attributes) {
      const name = a.name.toLowerCase();
      const value = a.value.trim().toLowerCase();
      if (name.startsWith("on")) bad.push(`${what(n)} has ${name}`);
      if (["href", "src", "srcdoc", "action", "formaction", "xlink:href", "data", "poster", "background"].includes(name)
          && ((value.includes("pwned") && n.id !== "extension-frame")  // its URL carries the route's query
              || /^(javascript|data|vbscript|file):/.test(value))
          && !(n.tagName === "LINK" && n.rel === "icon" && n.parentNode === document.head)) {
        bad.push(`${what(n)} ${name}=${a.value.slice(0, 80)}`);
      }
    }
    if (n.tagName === "SCRIPT" && !(n.parentNode === document.head && n.src.startsWith(location.origin + "/static/")))
      bad.push(`script ${n.src || n.textContent.slice(0, 80)}`);
    if (n.tagName === "STYLE" && n.textContent.includes("pwned")) bad.push(`style ${n.textContent.slice(0, 80)}`);
    if (["IFRAME", "FRAME", "OBJECT", "EMBED", "BASE"].includes(n.tagName) && n.id !== "extension-frame")
      bad.push(`element ${what(n)}`);
    if (n.tagName === "META" && n.parentNode !== document.head) bad.push(`meta ${n.outerHTML.slice(0, 80)}`);
  }
  const links = [];
  for (const a of document.body.querySelectorAll("a[href]")) {
    const url = new URL(a.href, location.href);
    const external = url.origin !== location.origin;
    if (!["http:", "https:"].includes(url.protocol)) bad.push(`link to ${a.getAttribute("href").slice(0, 80)}`);
    const rel = (a.rel || "").split(/\\s+/);
    if (external && !(rel.includes("noopener") && rel.includes("noreferrer")))
      bad.push(`external link without rel=noopener noreferrer: ${a.href}`);
    if (external) links.push({href: a.getAttribute("href"), text: a.textContent, target: a.target, rel: a.rel});
  }
  return {bad, links, pwned: window.__pwned === undefined ? null : String(window.__pwned)};
}"""


#: what a user would see as broken layout: the page or a box scrolling sideways, text cut off without an
#: ellipsis, or something sticking out of its card. Preformatted code (inspect JSON) scrolls by design.
LAYOUT = """() => {
  const out = [];
  const name = (n) =>
    `${n.tagName.toLowerCase()}.${String(n.className.baseVal ?? n.className).trim().replace(/\\s+/g, ".")}`;
  const doc = document.scrollingElement;
  if (doc.scrollWidth > doc.clientWidth + 1)
    out.push(`the page scrolls sideways: ${doc.scrollWidth} > ${doc.clientWidth}`);
  for (const n of document.body.querySelectorAll("*")) {
    if (n.clientWidth === 0 || n.scrollWidth <= n.clientWidth + 1 || n.closest("pre")) continue;
    const style = getComputedStyle(n);
    if (["auto", "scroll"].includes(style.overflowX))
      out.push(`${name(n)} scrolls sideways: ${n.scrollWidth} > ${n.clientWidth}`);
    else if (["hidden", "clip"].includes(style.overflowX) && style.textOverflow !== "ellipsis")
      out.push(`${name(n)} cuts its content: ${n.scrollWidth} > ${n.clientWidth}`);
  }
  const cards = ".mk-card, .table-card, .detail-section, .code-card, .log-frame, dialog";
  for (const card of document.body.querySelectorAll(cards)) {
    if (getComputedStyle(card).overflowX !== "visible") continue;  // it scrolls or clips: reported above
    const edge = card.getBoundingClientRect().right;
    for (const n of card.querySelectorAll("*")) {
      if (n.getClientRects().length === 0 || n.getBoundingClientRect().right <= edge + 1) continue;
      let clipped = false;
      for (let a = n.parentElement; a && a !== card; a = a.parentElement)
        if (getComputedStyle(a).overflowX !== "visible") clipped = true;
      const by = Math.round(n.getBoundingClientRect().right - edge);
      if (!clipped) out.push(`${name(n)} sticks out of ${name(card)} by ${by} px`);
    }
  }
  return out;
}"""


@dataclass
class World:
    server: Server
    key: str  # the installed extension
    image: str  # its local ref
    image_id: str
    remote: str  # its registry repository, as the Marketplace lists it
    container: str  # name
    container_id: str
    volume: str
    shots: Path
    requested: list[str]  # every URL the browser asked for


@pytest.fixture(scope="module")
def world(tmp_path_factory, fixture_image, docker_client: docker.DockerClient) -> Iterator[World]:
    suffix = secrets.token_hex(3)
    ref = f"{PREFIX}/evil-{suffix}:1.0.0"
    ns = f"{PREFIX}-{suffix}"
    context = tmp_path_factory.mktemp("untrusted-image")
    (context / "Dockerfile").write_text(
        f"FROM {fixture_image('ui-only', repo_prefix=PREFIX)}\n"
        f"LABEL {DOCKERFILE_LABEL}={json.dumps(DOCKERFILE_LABEL_VALUE)}\n"
        f"ENV HOSTILE_ENV={json.dumps(ENV_VALUE)}\n"
        "COPY metadata.json /\n"
    )
    (context / "metadata.json").write_text(json.dumps(
        {"icon": "icon.svg", "ui": {"dashboard-tab": {"title": TAB, "root": "/ui", "src": "index.html"}}}
    ))
    home = tmp_path_factory.mktemp("untrusted") / "home"
    shots = tmp_path_factory.mktemp("untrusted-shots")
    cleanup: list = []
    server = None
    try:
        docker_client.images.build(path=str(context), tag=ref, rm=True, labels=LABELS)
        cleanup.append(lambda: docker_client.images.remove(ref, noprune=True))
        remote_ref = f"{ns}/evil:1.0.0"
        docker_client.images.get(ref).tag(f"{ns}/evil", "1.0.0")
        cleanup.append(lambda: docker_client.images.remove(remote_ref, noprune=True))
        remote = images.push_fixture(docker_client, remote_ref).rsplit(":", 1)[0]
        docker_client.images.remove(remote_ref, noprune=True)  # the images view names it by `ref` alone

        volume = docker_client.volumes.create(f"dockext-untrusted-{suffix}", labels=VOLUME_LABELS)
        cleanup.append(lambda: volume.remove(force=True))
        container = docker_client.containers.run(
            fixture_image("vm-image", repo_prefix=PREFIX),
            ["sh", "-c", 'echo "$LOG_LINE"; echo "$ERR_LINE" >&2; echo "$LONG"; exec sleep 3600'],
            name=f"dockext-untrusted-{suffix}", detach=True, init=True, labels=CONTAINER_LABELS,
            environment={"LOG_LINE": LOG_LINE, "ERR_LINE": ERR_LINE, "LONG": LONG},
            volumes={volume.name: {"bind": "/data", "mode": "rw"}},
        )
        cleanup.insert(0, lambda: container.remove(force=True))

        server = start_server(home)
        run_dockext("install", "-f", ref, home=home)
        cleanup.insert(0, lambda: run_dockext("rm", ref, home=home, check=False))
        run_dockext("marketplace", "add", f"{REGISTRY}/{ns}", home=home)
        yield World(
            server, model.extension_key(model.ImageRef.parse(ref)), ref, docker_client.images.get(ref).id,
            remote, container.name, container.id, volume.name, shots, [],
        )
    finally:
        if server is not None:
            server.stop()
        for undo in cleanup:  # the extension and the container first, then what they use
            with contextlib.suppress(Exception):  # best effort: never hide the tests' own outcome
                undo()


@pytest.fixture(scope="module")
def view(browser: Browser, world: World) -> Iterator[Page]:
    """One Chromium page for the module, logged in, with the dashboard's CSP bypassed (see the module doc)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    context.on("request", lambda r: world.requested.append(r.url))
    page.goto(world.server.login_url)
    expect(page.locator("#home-title")).to_be_visible()
    yield page
    context.close()


def inert(page: Page, world: World, shot: str) -> list[dict[str, str]]:
    """Nothing ran, nothing was parsed as markup, nothing was fetched for it; the external links on the page."""
    page.screenshot(path=str(world.shots / f"{shot}.png"), full_page=True)
    found = page.evaluate(INERT)
    assert found["pwned"] is None, f"a payload ran: window.__pwned = {found['pwned']}"
    assert found["bad"] == [], found["bad"]
    fetched = [u for u in world.requested if urlsplit(u).path.startswith("/pwned")]  # what the payloads load
    assert fetched == [], fetched
    broken = page.evaluate(LAYOUT)  # long unbroken words in that text do not break the layout either
    assert broken == [], broken
    return found["links"]


def label_row(scope: Locator, key: str) -> Locator:
    return scope.locator(".label-row").filter(
        has=scope.page.locator(".label-key", has_text=re.compile(f"^{re.escape(key)}$"))
    )


def go(page: Page, world: World, hash_: str) -> None:
    page.goto(f"{world.server.url}/{hash_}")


def test_home_and_sidebar_show_the_extensions_metadata_as_text(view: Page, world: World) -> None:
    go(view, world, "#/")
    row = view.locator("#home-table tbody tr").filter(has_text="Evil")
    expect(row).to_contain_text(TITLE)
    expect(row).to_contain_text(VENDOR)
    expect(row).to_contain_text(TAB)
    tab = view.locator(f'[role="tab"][data-key="{world.key}"]')
    expect(tab).to_contain_text(TITLE)
    inert(view, world, "home")

    tab.click()  # its own tab (the open extension is named by its title)
    expect(view.locator("#extension-frame")).to_have_attribute("data-key", world.key)
    expect(view.frame_locator("#extension-frame").locator("body")).not_to_be_empty()
    inert(view, world, "extension-tab")


def test_the_images_view_shows_labels_layers_and_env_as_text(view: Page, world: World) -> None:
    go(view, world, "#/images")
    repo = world.image.rsplit(":", 1)[0]
    view.get_by_role("button", name=repo, exact=True).click()
    detail = view.locator("#view-images")
    expect(detail.locator("h1")).to_have_text(world.image)
    labels = detail.locator(".label-list")
    for key, value in [*LABELS.items(), (DOCKERFILE_LABEL, DOCKERFILE_LABEL_VALUE)]:
        expect(label_row(labels, key)).to_contain_text(value)
    # the Dockerfile's LABEL and ENV lines are its layers' commands; the ENV is in the configuration too
    commands = detail.locator(".layer-command")
    expect(commands.filter(has_text="HOSTILE_ENV")).to_have_text(f"ENV HOSTILE_ENV={ENV_VALUE}")
    expect(commands.filter(has_text=DOCKERFILE_LABEL)).to_have_text(
        f"LABEL {DOCKERFILE_LABEL}={DOCKERFILE_LABEL_VALUE}"
    )
    expect(detail.locator(".kv-list")).to_contain_text(f"HOSTILE_ENV={ENV_VALUE}")
    json_view = detail.locator(".json-view")
    expect(json_view).to_contain_text(json.dumps(CHANGELOG))
    expect(json_view).to_contain_text(json.dumps(f"HOSTILE_ENV={ENV_VALUE}"))
    links = inert(view, world, "image")
    assert links == [], links  # the URL labels are text here, even the http one


def test_the_marketplace_card_shows_text_and_links_only_http_urls(view: Page, world: World) -> None:
    go(view, world, "#/marketplace")
    card = view.locator(f'.mk-card[data-image="{world.remote}"]')
    expect(card.locator(".mk-title")).to_have_text(TITLE)
    expect(card.locator(".mk-vendor")).to_have_text(VENDOR[:200])  # the Marketplace keeps 200 characters
    expect(card.locator(".mk-description")).to_have_text(DESCRIPTION)
    expect(card.locator(".chip")).to_have_text([CATEGORY, "testing-tools"])
    card.locator(".mk-details summary").click()
    expect(card.locator(".mk-text")).to_have_text(
        [DETAILED_TEXT, f"{CHANGELOG_TEXT}\n[docs](javascript:window.__pwned='changelog')"]
    )
    # only the http(s) screenshot is a link, named by its alt text; the javascript: publisher URL is no link
    expect(card.locator(".mk-links a")).to_have_count(1)
    expect(card.locator(".mk-links a")).to_have_text(SHOT_ALT[:200])  # alt texts are kept to 200 characters
    links = inert(view, world, "marketplace")
    assert links == [{"href": SAFE_URL + "shot.png", "text": SHOT_ALT[:200], "target": "_blank",
                      "rel": "noopener noreferrer"}], links

    card.get_by_role("button", name="Install").click()  # the confirmation names it
    dialog = view.locator("dialog.dx-dialog")
    expect(dialog.locator("h2")).to_have_text(f"Install {TITLE}?")
    inert(view, world, "marketplace-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)


def test_the_marketplace_card_never_makes_a_live_link_of_other_schemes_even_if_the_catalog_has_them(
        view: Page, world: World) -> None:
    """The server keeps only http(s) URLs in the catalog; the card checks again (a catalog is attacker data, and
    one filter is one mistake away from none): a catalog answer carrying other schemes still gives text."""
    def altered(route):  # fetched from 127.0.0.1 under the dashboard's name (the test's resolver lacks *.localhost)
        url = urlsplit(route.request.url)
        body = route.fetch(url=url._replace(netloc=f"127.0.0.1:{url.port}").geturl(),
                           headers={**route.request.headers, "host": url.netloc}).json()
        for ext in body["extensions"]:
            if ext["image"] == world.remote:
                ext["publisherUrl"] = "javascript:window.__pwned='publisher'"
                ext["screenshots"] = [{"url": "data:text/html,<script>window.__pwned=1</script>", "alt": "data shot"},
                                      {"url": "not a url", "alt": "no url"}, {"url": SAFE_URL + "a.png", "alt": "ok"}]
        route.fulfill(json=body)

    view.route("**/api/marketplace*", altered)
    try:
        go(view, world, "#/marketplace")
        view.reload()  # the page may hold the catalog already (the test before ends on this view): fetched anew
        card = view.locator(f'.mk-card[data-image="{world.remote}"]')
        card.locator(".mk-details summary").click()
        expect(card.locator(".mk-links")).to_contain_text("Publisher")
        expect(card.locator(".mk-links")).to_contain_text("data shot")
        expect(card.locator(".mk-links a")).to_have_text(["ok"])
        links = inert(view, world, "marketplace-altered")
        assert [link["href"] for link in links] == [SAFE_URL + "a.png"], links
    finally:
        view.unroute("**/api/marketplace*")


def test_the_containers_views_show_labels_env_and_logs_as_text(view: Page, world: World) -> None:
    go(view, world, "#/containers")
    expect(view.get_by_role("button", name=world.container, exact=True)).to_be_visible()
    inert(view, world, "containers")

    go(view, world, f"#/containers/{world.container_id}/logs")
    log = view.get_by_role("log", name="Container logs")
    expect(log.locator(".log-text").filter(has_text="log ")).to_have_text(LOG_LINE)
    expect(log.locator(".log-stderr .log-text")).to_have_text(ERR_LINE)
    expect(log.locator(".log-text").filter(has_text="pwnedlongword")).to_have_text(LONG)
    inert(view, world, "container-logs")

    view.get_by_role("tab", name="Inspect").click()
    json_view = view.locator("#view-containers .json-view")
    for key, value in CONTAINER_LABELS.items():
        expect(json_view).to_contain_text(f"{json.dumps(key)}: {json.dumps(value)}")
    expect(json_view).to_contain_text(json.dumps(f"LOG_LINE={LOG_LINE}"))
    inert(view, world, "container-inspect")


def test_the_volumes_views_show_labels_as_text(view: Page, world: World) -> None:
    go(view, world, "#/volumes")
    row = view.locator("#view-volumes tbody tr").filter(has=view.get_by_role("button", name=world.volume, exact=True))
    expect(row).to_contain_text(f"Compose project {VOLUME_LABELS['com.docker.compose.project']}")
    inert(view, world, "volumes")
    row.get_by_role("button", name=world.volume, exact=True).click()
    detail = view.locator("#view-volumes")
    expect(detail.locator("h1")).to_have_text(world.volume)
    for key, value in VOLUME_LABELS.items():
        expect(label_row(detail, key)).to_contain_text(value)
        expect(detail.locator(".json-view")).to_contain_text(f"{json.dumps(key)}: {json.dumps(value)}")
    inert(view, world, "volume")


#: posted by the extension's page, as its SDK does: a toast, links to open, a file dialog
FROM_FRAME = """([toast, urls, options]) => {
  const origin = window.__dockextConfig.dashboardOrigin;
  parent.postMessage({dockext: "toast", level: "error", message: toast}, origin);
  for (const url of urls) parent.postMessage({dockext: "openExternal", url}, origin);
  parent.postMessage({dockext: "dialog", id: "untrusted-dialog", options}, origin);
}"""
#: file names are the host's (an extension's backend can write them into a bind mount): no "/" in them
FILE_NAMES = ["<img src=pwned-file onerror=window.__pwned='file'>", "<svg onload=window.__pwned='dir'>"]


def test_what_an_extension_page_sends_is_shown_as_text(view: Page, world: World, tmp_path: Path) -> None:
    """Its toasts, the file dialog it opens (its title, message, button, filters and the host's file names),
    and links it asks to open: only http(s) ones would open, so ``javascript:``/``data:`` open nothing."""
    folder = tmp_path / "pick"
    folder.mkdir()
    (folder / FILE_NAMES[0]).write_text("x")
    (folder / FILE_NAMES[1]).mkdir()
    go(view, world, f"#/extensions/{world.key}")
    expect(view.frame_locator("#extension-frame").locator("#status")).to_have_text("done")
    handle = view.locator("#extension-frame").element_handle()
    frame = handle.content_frame() if handle else None
    assert frame is not None
    pages = len(view.context.pages)
    frame.evaluate(FROM_FRAME, [
        f"Toast {hostile('toast')}",
        ["javascript:window.opener.__pwned='open'", "data:text/html,<script>alert(1)</script>", "vbscript:x"],
        {"title": f"Title {hostile('dialog')}"[:200], "message": f"Msg {hostile('message')}",
         "buttonLabel": "<b onclick=x>Go</b>", "defaultPath": str(folder), "properties": ["openFile"],
         "filters": [{"name": "<i onclick=x>F</i>", "extensions": ["*"]}]},
    ])
    toast = view.locator(".toast").filter(has_text="Toast")
    expect(toast).to_contain_text(f"Toast {hostile('toast')}")
    expect(toast).to_contain_text(TITLE)  # which extension says it
    dialog = view.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_have_text(f"Title {hostile('dialog')}"[:200])
    expect(dialog).to_contain_text(f"Msg {hostile('message')}")
    expect(dialog).to_contain_text(f"{TITLE} asks you to choose a file")
    expect(dialog.get_by_role("button", name="<b onclick=x>Go</b>")).to_be_visible()
    expect(dialog.get_by_label("File type")).to_contain_text("<i onclick=x>F</i> (*)")
    for name in FILE_NAMES:
        expect(dialog.locator(".fd-name").filter(has_text=name)).to_have_text(name)
    inert(view, world, "extension-sent")
    assert len(view.context.pages) == pages  # no window opened for a javascript:/data:/vbscript: link
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)


ROUTE = "<img src=pwned-route onerror=\"window.__pwned='route'\"><svg onload=window.__pwned=2>"


@pytest.mark.parametrize("hash_, where, message", [
    ("#/containers/{}", "#view-containers [role=alert]", "No such container: {}"),
    ("#/containers/{}/inspect", "#view-containers [role=alert]", "No such container: {}"),
    ("#/volumes/{}", "#view-volumes [role=alert]", "No such volume: {}"),
    ("#/images/{}", "#view-images [role=alert]", "{}"),
])
def test_markup_in_a_route_is_shown_as_text(view: Page, world: World, hash_: str, where: str, message: str) -> None:
    go(view, world, hash_.format(quote(ROUTE, safe="")))
    expect(view.locator(where)).to_contain_text(message.format(ROUTE))
    inert(view, world, "route-" + hash_.split("/")[1])


def test_markup_in_query_parameters_and_an_extension_route_runs_nothing(view: Page, world: World) -> None:
    q = quote(ROUTE, safe="")
    view.goto(f"{world.server.url}/?next={q}&q={q}#/extensions/{q}?x={q}")
    expect(view.locator("#home-title")).to_be_visible()
    inert(view, world, "route-query")
    view.goto(f"{world.server.url}/#/extensions/{world.key}?x={q}")  # the query goes to the extension's frame
    expect(view.locator("#extension-frame")).to_have_attribute("data-key", world.key)
    inert(view, world, "route-extension-query")
    view.goto(f"{world.server.url}/login?error={q}&token={q}")  # a wrong token: the login page, no echo
    expect(view.locator("body")).not_to_contain_text("pwned")
    inert(view, world, "route-login")
