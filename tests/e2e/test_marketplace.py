"""The dashboard's Marketplace over the real local registry: browse, install, update and remove from Chromium."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator

import docker
import pytest
from playwright.sync_api import Page, expect

from dockext import model
from tests.support import images
from tests.support.authregistry import PASSWORD, USER, auth_registry
from tests.support.cli import run_dockext
from tests.support.server import start_server

from .test_dashboard import tab

pytestmark = [pytest.mark.engine, pytest.mark.browser]

REGISTRY = "127.0.0.1:5000"


@pytest.fixture
def namespace(fixture_image, docker_client: docker.DockerClient) -> Iterator[str]:
    """A namespace of the shared registry for this test alone, holding ui-only 1.0.0 and vm-image 1.0.0."""
    ns = f"dockext-mkt-{secrets.token_hex(3)}"
    built = [fixture_image("ui-only", repo_prefix=ns), fixture_image("vm-image", repo_prefix=ns)]
    for ref in built:
        images.push_fixture(docker_client, ref)
    yield ns
    for ref in [*built, f"{ns}/ui-only:2.0.0"]:
        for name in (ref, f"{REGISTRY}/{ref}"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(name, noprune=True)


def card(page: Page, image: str):
    return page.locator(f'.mk-card[data-image="{image}"]')


def confirm(page: Page, label: str) -> None:
    dialog = page.locator("dialog.dx-dialog")
    if label != "Remove":
        expect(dialog).to_contain_text("Extensions can install binaries")  # the CLI's warning
    dialog.get_by_role("button", name=label, exact=True).click()
    expect(dialog).to_have_count(0)


def test_browse_install_update_and_remove_from_the_marketplace(
    page: Page, server, namespace, fixture_image, docker_client
):
    ui_only, vm_image = f"{REGISTRY}/{namespace}/ui-only", f"{REGISTRY}/{namespace}/vm-image"
    key = model.extension_key(model.ImageRef.parse(ui_only))
    page.goto(server.login_url)
    page.locator("#marketplace-button").click()
    expect(page).to_have_url(f"{server.url}/#/marketplace")
    # no source yet: one is added from the dashboard (what `dockext marketplace add` does)
    page.get_by_role("button", name="Add a registry").click()
    dialog = page.locator("dialog.dx-dialog")
    dialog.get_by_label("Registry or namespace").fill("https://nope")
    dialog.get_by_role("button", name="Add", exact=True).click()
    expect(dialog.locator(".mk-source-error")).to_contain_text("without a scheme")
    dialog.get_by_label("Registry or namespace").fill(f"{REGISTRY}/{namespace}")
    dialog.get_by_role("button", name="Add", exact=True).click()
    expect(dialog).to_have_count(0)
    assert f"{REGISTRY}/{namespace}" in run_dockext("marketplace", "ls", home=server.home).stdout
    expect(card(page, ui_only).locator(".mk-title")).to_have_text("UI Only")
    expect(card(page, vm_image).locator(".mk-title")).to_have_text("VM Image")
    expect(card(page, ui_only).locator(".mk-vendor")).to_have_text("dockext tests")
    expect(card(page, ui_only).locator(".mk-version")).to_have_text("1.0.0")
    expect(page.locator("#view-marketplace .view-summary")).to_have_text("2 extensions from 1 source")

    page.get_by_role("searchbox", name="Search the Marketplace").fill("vm image")
    expect(page.locator(".mk-card")).to_have_count(1)
    page.get_by_role("searchbox", name="Search the Marketplace").fill("")

    # install: a confirmation like the CLI's, progress on the card, then the tab
    card(page, ui_only).get_by_role("button", name="Install").click()
    confirm(page, "Install")
    expect(page.locator("#toasts")).to_contain_text("UI Only installed.", timeout=60_000)
    expect(tab(page, key)).to_be_visible()
    expect(card(page, ui_only).locator(".mk-installed")).to_have_text("Installed 1.0.0")
    assert [r["image"] for r in run_ls(server)] == [f"{ui_only}:1.0.0"]  # pulled from the registry

    # a newer version is pushed: the card offers the update
    images.push_fixture(docker_client, fixture_image("ui-only", tag="2.0.0", repo_prefix=namespace))
    page.get_by_role("button", name="Refresh").click()
    card(page, ui_only).get_by_role("button", name="Update to 2.0.0").click()
    confirm(page, "Update")
    expect(page.locator("#toasts")).to_contain_text("UI Only updated to 2.0.0.", timeout=60_000)
    expect(card(page, ui_only).locator(".mk-installed")).to_have_text("Installed 2.0.0")

    card(page, ui_only).get_by_role("button", name="Open").click()
    expect(page.frame_locator("#extension-frame").locator("#image")).to_have_text(f"{ui_only}:2.0.0")

    page.locator("#marketplace-button").click()
    card(page, ui_only).get_by_role("button", name="Remove").click()
    confirm(page, "Remove")
    expect(page.locator("#toasts")).to_contain_text("UI Only removed.", timeout=60_000)
    expect(tab(page, key)).to_have_count(0)
    expect(card(page, ui_only).get_by_role("button", name="Install")).to_be_visible()


def test_only_listed_refuses_in_the_dashboard_too_and_a_dead_source_is_shown(page: Page, server, namespace):
    pinned = server.home.parent / "extensions.txt"
    pinned.write_text(f"# the one allowed\n{REGISTRY}/{namespace}/vm-image:1.0.0\n")
    run_dockext("marketplace", "add", "--list", str(pinned), home=server.home)
    run_dockext("marketplace", "add", "127.0.0.1:9/nothing", home=server.home)  # nothing listens on port 9
    run_dockext("marketplace", "only-listed", "on", home=server.home)
    page.goto(server.login_url)
    page.locator("#marketplace-button").click()
    expect(page.locator(".mk-note").first).to_contain_text("Only the extensions listed here can be installed")
    expect(page.locator(".mk-note-error")).to_contain_text("127.0.0.1:9")
    expect(page.locator(".mk-card")).to_have_count(1)
    expect(card(page, f"{REGISTRY}/{namespace}/vm-image").locator(".mk-title")).to_have_text("VM Image")
    refused = run_dockext("install", "-f", f"{REGISTRY}/{namespace}/ui-only:1.0.0", home=server.home, check=False)
    assert refused.returncode == 1 and "marketplace" in refused.stderr.lower(), refused.stderr


def test_the_marketplace_filters_by_category_and_by_what_is_installed(
    page: Page, server, namespace, fixture_image, docker_client
):
    """Docker Desktop's Browse tab filters by category and its Manage tab shows what is installed: here both are
    filters beside the search, built from the catalog's labels and the installed records."""
    local = fixture_image("host-binary", repo_prefix=namespace,
                          labels={"com.docker.extension.categories": "security"})
    pushed = images.push_fixture(docker_client, local)
    ui_only = f"{REGISTRY}/{namespace}/ui-only"
    run_dockext("marketplace", "add", f"{REGISTRY}/{namespace}", home=server.home)
    run_dockext("install", "-f", f"{ui_only}:1.0.0", home=server.home)
    try:
        page.goto(server.login_url)
        page.locator("#marketplace-button").click()
        expect(page.locator(".mk-card")).to_have_count(3)
        category = page.get_by_role("combobox", name="Category")
        expect(category.locator("option")).to_have_text(["All categories", "security (1)", "testing-tools (2)"])
        category.select_option("security")
        expect(page.locator(".mk-card .mk-title")).to_have_text(["Host Binary"])
        category.select_option("testing-tools")
        expect(page.locator(".mk-card .mk-title")).to_have_text(["UI Only", "VM Image"])
        page.get_by_role("searchbox", name="Search the Marketplace").fill("vm")  # with the search: both apply
        expect(page.locator(".mk-card .mk-title")).to_have_text(["VM Image"])
        page.get_by_role("searchbox", name="Search the Marketplace").fill("")
        category.select_option("")

        show = page.get_by_role("combobox", name="Show")
        show.select_option("installed")
        expect(page.locator(".mk-card .mk-title")).to_have_text(["UI Only"])
        show.select_option("updates")
        expect(page.locator(".mk-card")).to_have_count(0)
        expect(page.locator("#view-marketplace .state-message")).to_have_text("No extension matches.")
        images.push_fixture(docker_client, fixture_image("ui-only", tag="2.0.0", repo_prefix=namespace))
        page.get_by_role("button", name="Refresh").click()  # the filters stay as chosen
        expect(page.locator(".mk-card .mk-title")).to_have_text(["UI Only"])
        expect(page.locator(".mk-card").get_by_role("button", name="Update to 2.0.0")).to_be_visible()
        show.select_option("available")
        expect(page.locator(".mk-card .mk-title")).to_have_text(["Host Binary", "VM Image"])
    finally:
        run_dockext("rm", ui_only, home=server.home)
        for name in (pushed, local):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(name, noprune=True)


def run_ls(server) -> list[dict]:
    return json.loads(run_dockext("ls", "--format", "json", home=server.home).stdout)


def test_an_install_from_the_marketplace_can_withhold_the_engine_socket_from_the_first_start(
    page: Page, server, namespace, fixture_image, docker_client
):
    """The install dialog's "run it without" boxes are `dockext install --deny`: the compose fixture (whose
    backend mounts the engine socket) is installed from the registry and its backend never gets the socket."""
    local = fixture_image("compose", repo_prefix=namespace)
    ref = images.push_fixture(docker_client, local)
    image = f"{REGISTRY}/{namespace}/compose"
    project = model.compose_project(model.extension_key(model.ImageRef.parse(image)))
    run_dockext("marketplace", "add", f"{REGISTRY}/{namespace}", home=server.home)
    page.goto(server.login_url)
    page.locator("#marketplace-button").click()
    card(page, image).get_by_role("button", name="Install").click()
    dialog = page.locator("dialog.dx-dialog")
    expect(dialog).to_contain_text("If its backend asks for them, run it without:")
    dialog.get_by_role("checkbox", name="The engine socket").check()
    confirm(page, "Install")
    try:
        expect(page.locator("#toasts")).to_contain_text("Compose Backend installed.", timeout=90_000)
        [server_ctr] = [c for c in docker_client.containers.list(
            filters={"label": f"com.docker.compose.project={project}"})
            if c.labels["com.docker.compose.service"] == "server"]
        assert not any(m["Destination"] == "/var/run/docker.sock" for m in server_ctr.attrs["Mounts"])
        [row] = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert (row["engine"], row["withheld"]) == (False, ["engine"])
        page.locator("#home-button").click()
        expect(page.locator("#ext-rows")).to_contain_text("engine socket: withheld")
    finally:
        run_dockext("rm", image, home=server.home)
        docker_client.volumes.get(f"{project}_data").remove()
        for name in (ref, local):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(name, noprune=True)


def test_a_shared_link_offers_the_install_and_nothing_happens_without_the_click(page: Page, server, namespace):
    """`dockext share` (as `docker extension share`): a link to the dashboard's Marketplace with an install
    dialog for the image. Opening it installs nothing (S22); Cancel leaves nothing; Install installs."""
    image = f"{REGISTRY}/{namespace}/vm-image"
    out = run_dockext("share", f"{image}:1.0.0", home=server.home).stdout
    link = out.split("Share this link: ", 1)[1].split()[0]
    assert link == f"http://dockext.localhost:{server.port}/#/marketplace/install/{image}:1.0.0"  # this server's
    assert f"extensionId={image.replace(':', '%3A').replace('/', '%2F')}&tag=1.0.0" in out  # and Docker Desktop's
    page.goto(server.login_url)
    page.goto(link)
    dialog = page.locator("dialog.dx-dialog")
    expect(dialog).to_contain_text("Install vm-image?")
    expect(dialog.locator(".dx-ref")).to_have_text(f"{image}:1.0.0")
    expect(page).to_have_url(f"{server.url}/#/marketplace")  # a reload does not ask again
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert run_ls(server) == []
    page.goto(link)
    confirm(page, "Install")
    try:
        expect(page.locator("#toasts")).to_contain_text("vm-image installed.", timeout=60_000)
        assert [r["image"] for r in run_ls(server)] == [f"{image}:1.0.0"]
    finally:
        run_dockext("rm", image, home=server.home, check=False)


def test_a_private_registry_lists_and_installs_with_the_saved_login_and_says_how_to_log_in_without(
    page: Page, tmp_path, fixture_image, docker_client
):
    """A registry behind token auth (as Docker Hub, GHCR or Harbor): the dashboard's server reads it with the
    identity token `docker login` saved, and its engine pulls with it; without a login the source's error says
    how to log in."""
    with auth_registry(tmp_path / "registry", "token") as registry:
        config = tmp_path / "docker"
        done = subprocess.run(["docker", "--config", str(config), "login", "-u", USER, "--password-stdin",
                               registry.address], input=PASSWORD + "\n", capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        ref = f"{registry.address}/acme/ui-only:1.0.0"
        docker_client.images.get(fixture_image("ui-only")).tag(ref)
        pushed = subprocess.run(["docker", "--config", str(config), "push", ref], capture_output=True, text=True,
                                check=False)
        assert pushed.returncode == 0, pushed.stderr
        docker_client.images.remove(ref)
        image = f"{registry.address}/acme/ui-only"
        key = model.extension_key(model.ImageRef.parse(image))
        try:
            for logged_in in (False, True):
                home = tmp_path / f"home-{logged_in}"
                env = {"DOCKER_CONFIG": str(config if logged_in else tmp_path / "nobody")}
                run_dockext("marketplace", "add", f"{registry.address}/acme", home=home)
                server = start_server(home, extra_env=env)
                try:
                    page.goto(server.login_url)
                    page.locator("#marketplace-button").click()
                    if not logged_in:
                        expect(page.locator(".mk-note-error")).to_contain_text(
                            f"{registry.address} refused anonymous access to the catalog")
                        expect(page.locator(".mk-note-error")).to_contain_text(f"docker login {registry.address}")
                        expect(page.locator(".mk-card")).to_have_count(0)
                        continue
                    expect(card(page, image).locator(".mk-title")).to_have_text("UI Only")
                    card(page, image).get_by_role("button", name="Install").click()
                    confirm(page, "Install")
                    expect(page.locator("#toasts")).to_contain_text("UI Only installed.", timeout=60_000)
                    expect(tab(page, key)).to_be_visible()
                    assert [r["image"] for r in run_ls(server)] == [ref]  # pulled with the login
                    ours = [r for r in registry.token_requests() if r.get("client_id") == "dockext"]
                    assert ours and {r["grant"] for r in ours} == {"refresh_token"}
                finally:
                    server.stop()
        finally:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(ref)
