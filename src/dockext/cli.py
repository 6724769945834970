"""``dockext``: install, list and remove extensions; serve the dashboard; act as ``docker extension``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import click
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from . import API_VERSION, __version__, cliplugin, model
from .engine import Engine, PullEvent
from .errors import Busy, DockextError, reason
from .installer import Installer
from .paths import layout
from .store import Record, Store

if TYPE_CHECKING:  # rich's progress bar and table, 0.02 s of every command's start: imported where used
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from .registry import Insecure

__all__ = ["main"]

# markup off: what is printed comes from images (titles, vendors) and users; `[/]` in a label must print as it is
err = Console(stderr=True, highlight=False, markup=False)
out = Console(highlight=False, markup=False)
F = TypeVar("F", bound=Callable[..., Any])


class CliReporter:
    """Prints install steps like ``docker extension install`` does, and a progress bar for pulls.

    A bar hides the terminal's cursor while it runs: :func:`handle_errors` stops every bar still running
    (:meth:`stop_all`) before anything else is printed, however the command ends."""

    #: the reporters whose progress bar is on the screen now
    live: ClassVar[set[CliReporter]] = set()

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def step(self, message: str) -> None:
        self._stop()
        self.console.print(_as_run(_printable(message)), soft_wrap=True)

    def pull(self, event: PullEvent) -> None:
        layer = event.get("id")
        detail = event.get("progressDetail") or {}
        if not layer or "total" not in detail:
            return
        if self.progress is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.progress = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                console=self.console, transient=True,
            )
            CliReporter.live.add(self)
            self.progress.start()
        if layer not in self.tasks:
            self.tasks[layer] = self.progress.add_task(f"{layer} {event.get('status', '')}", total=detail["total"])
        self.progress.update(
            self.tasks[layer], completed=detail.get("current", 0), total=detail["total"],
            description=f"{layer} {event.get('status', '')}",
        )

    def _stop(self) -> None:
        CliReporter.live.discard(self)
        if self.progress is not None:
            progress, self.progress = self.progress, None
            self.tasks.clear()
            progress.stop()  # the bar erased and the cursor shown again

    @classmethod
    def stop_all(cls) -> None:
        for reporter in list(cls.live):
            with contextlib.suppress(Exception):  # never hide the error being reported
                reporter._stop()


def handle_errors(fn: F) -> F:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return fn(*args, **kwargs)
            finally:  # whatever ends the command: a progress bar goes first, so what follows is on lines of its own
                CliReporter.stop_all()
        except DockextError as exc:
            err.print(Text.assemble(("Error:", "bold red"), " ", _as_run(_printable(exc.message))), soft_wrap=True)
            if exc.hint:
                err.print(_as_run(_printable(exc.hint)), soft_wrap=True)
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            # click turns Ctrl-C at a prompt into Abort ("Aborted!", exit 1): an interrupt like any other here.
            # "n" to a confirmation, or the end of the input, stays click's Abort.
            interrupt = exc.__context__
            if not isinstance(interrupt, KeyboardInterrupt):
                raise
            err.print()  # the prompt's line is left open after ^C
            _interrupted(interrupt)
        except OSError as exc:  # a file dockext could not read or write, outside an operation that says more
            where = f" ({exc.filename})" if exc.filename else ""
            err.print(Text.assemble(("Error:", "bold red"), " ", f"{exc.strerror or exc}{where}"), soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            _interrupted(exc)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def _confirm_trust(force: bool) -> None:
    """Docker's question before an extension goes in (at a terminal, unless ``-f``); no ends the command."""
    if not force and sys.stdin.isatty():
        click.confirm(
            "Extensions can install binaries, invoke commands and access files on your machine.\n"
            "Are you sure you want to continue?",
            abort=True,
        )


def _prog() -> str:
    """How the user ran dockext, for the commands a hint suggests: ``dockext`` or ``docker extension``."""
    ctx = click.get_current_context(silent=True)
    return "docker extension" if ctx is not None and ctx.find_root().info_name == "docker extension" else "dockext"


#: what a terminal would act on rather than show (escape sequences, carriage returns, bells), C0 and C1
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with its control characters shown as ``\\xNN``: titles, vendors and names in messages come from
    images, and an escape sequence there could rewrite what the terminal shows (hide the lines that say what a
    backend gets, say). ``newlines=False``: a line break too (a table cell)."""
    pattern = _CONTROL if newlines else re.compile(f"{_CONTROL.pattern}|\n")
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _as_run(text: str) -> str:
    """``text`` with the dockext commands it names (``dockext rm X``) spelt as the user runs dockext: ``docker
    extension rm X`` under the plugin, where ``dockext`` itself may not be on the PATH."""
    prog = _prog()
    if prog == "dockext":
        return text
    return re.sub(rf"\bdockext (?=(?:{'|'.join(map(re.escape, cli.commands))})\b)", f"{prog} ", text)


def _interrupted(exc: KeyboardInterrupt) -> None:
    """Exit as an interrupted command does: 130 for Ctrl-C, 128 + the signal's number for SIGTERM or SIGHUP."""
    if isinstance(exc, Terminated):
        err.print(f"Stopped by {exc}.")
        sys.exit(128 + signal.Signals[str(exc)].value)
    err.print("Interrupted.")
    sys.exit(130)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, wrap: str | None = None) -> Table:
    """A table printed like `docker extension ls` prints one: no cell is ever shortened to the terminal's width
    (people copy these names, and scripts cut columns out of the lines), so a line may be wider than the
    terminal. Only the column named ``wrap`` (the last, free text) wraps its words, where the terminal is too
    narrow for it (in a terminal only); its header never does."""
    from rich.table import Table

    rows = [[_printable(cell, newlines=False) for cell in row] for row in rows]  # the images' words, shown
    if not out.is_terminal:
        wrap = None  # into a pipe or a file: one line per row, for grep and awk
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    gaps = 2 * (len(header) - 1)  # two spaces between columns
    natural = [max(cell_len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    least = [cell_len(col) if col == wrap else natural[i] for i, col in enumerate(header)]
    for col, width in zip(header, least, strict=True):
        table.add_column(col, no_wrap=col != wrap, min_width=width, overflow="fold" if col == wrap else "ellipsis")
    table.width = max(sum(least) + gaps, min(sum(natural) + gaps, out.width))
    for row in rows:
        table.add_row(*row)
    return table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dockext")
def cli() -> None:
    """Run Docker Desktop extensions on any Docker engine."""


@cli.command()
@click.argument("image")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--image", "pick", metavar="REF",
              help="From a file or OCI layout holding several images: the one to install (or the name to give "
              "the image of a layout without names).")
@click.option("--deny", multiple=True, type=click.Choice(["engine", "system", "network"]),
              help="Withhold from its backend from the start: engine (the Docker engine's socket), system "
              "(privileged mode, the host's namespaces, host paths, devices, capabilities; its published ports "
              "listen on 127.0.0.1 only), network (its containers reach each other, nothing else). Repeatable.")
@handle_errors
def install(image: str, force: bool, pick: str | None, deny: tuple[str, ...]) -> None:
    """Install the extension IMAGE[:TAG] (pulled if it is not local), or the one in a `docker save` FILE
    or an OCI image layout (a directory, or a tar of one).

    IMAGE is a file when a file of that name exists, or when it looks like a path (./ext.tar, /x/ext.tar.gz,
    ext.tgz): the file is loaded into the engine (plain, gzip, bzip2 or xz, like `docker load`), then the
    extension image it holds is installed by name. No registry is needed."""
    from . import offline

    tarball = offline.tarball_argument(image)
    if pick is not None and tarball is None:
        raise DockextError(
            f"--image chooses an image inside a tar file, and {image} is not a file",
            hint=f"To install the image {image} by name, leave --image out: {_prog()} install {image}",
        )
    if tarball is not None:
        offline.check_tarball(tarball, image)
    _confirm_trust(force)
    reporter = CliReporter(out)
    installer = Installer(layout(), reporter=reporter)
    if tarball is not None:
        offline.install_tarball(installer, tarball, pick, reporter, arg=image, deny=deny)
    else:  # by name; from a Marketplace folder only if it can be neither found nor pulled
        offline.by_name(installer, image, reporter, deny=deny)


@cli.command()
@click.argument("image")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def update(image: str, force: bool) -> None:
    """Replace an installed extension with IMAGE[:TAG], or with the one in a `docker save` FILE or OCI layout;
    the installed version comes back if it fails.

    Named volumes are kept, and so is the UI's origin (its localStorage). IMAGE is a file as for install."""
    from . import offline

    tarball = offline.tarball_argument(image)
    if tarball is not None:
        offline.check_tarball(tarball, image)
    _confirm_trust(force)
    reporter = CliReporter(out)
    installer = Installer(layout(), reporter=reporter)
    if tarball is not None:
        offline.install_tarball(installer, tarball, None, reporter, arg=image, update=True)
    else:
        offline.by_name(installer, image, reporter, update=True)


@cli.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: for people, as `docker extension ls`; json: every field, for scripts.")
@handle_errors
def list_(fmt: str) -> None:
    """List installed extensions."""
    _recover()
    store = Store(layout())
    records = store.records()
    for key in sorted(set(store.keys()) - {r.key for r in records}):  # not listed: say why, not nothing
        try:
            store.read(key)
        except DockextError as exc:
            err.print(f"dockext: {key} is not listed: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
                      soft_wrap=True)
    states = _vm_states(records)
    rows = [_row(r, states) for r in records]
    if fmt == "json":
        out.print_json(json.dumps(rows)) if sys.stdout.isatty() else print(json.dumps(rows, indent=2))
        return
    table = _table(("ID", "PROVIDER", "VERSION", "UI", "VM", "HOST"),
                   [(row["id"], row["provider"], row["version"], row["ui"], row["vm"], row["host"]) for row in rows])
    out.print(table, soft_wrap=True, crop=False)
    for row in rows:
        if row["vm"].startswith("Elsewhere"):
            err.print(f"{row['id']}: its backend is on another engine ({row['backend_engine']}), not the one dockext "
                      f"reaches now: point dockext at it to manage it, or `dockext rm --forget {row['id']}`.",
                      soft_wrap=True)


@cli.command()
@click.argument("image")
@click.option("--forget", is_flag=True,
              help="Remove it from dockext only, leaving its backend where it is: for an extension whose backend "
              "is on an engine dockext no longer reaches (`ls` shows Elsewhere).")
@handle_errors
def rm(image: str, forget: bool) -> None:
    """Remove the extension IMAGE (its named volumes are kept)."""
    Installer(layout(), reporter=CliReporter(out)).remove(image, forget=forget)


# Docker Desktop's documentation removes an extension with `docker extension uninstall`: the same command as rm
cli.add_command(click.Command(
    "uninstall", callback=rm.callback, params=rm.params,
    help="Remove the extension IMAGE (its named volumes are kept); the same as rm.",
    short_help="The same as rm: remove the extension IMAGE.",
))


@cli.command()
@click.argument("target", metavar="IMAGE[:TAG]|PATH/metadata.json")
@click.option("--errors-only", is_flag=True, help="Print the errors only, not the warnings.")
@click.option(
    "--auto-resolve-tag", is_flag=True,
    help="Without a tag: take the greatest semver tag among the local images of IMAGE.",
)
@click.option(
    "--sdk-compatibility", is_flag=True,
    help=f"Strict API-version check: the api.version label must accept {API_VERSION} (a bare version must be it).",
)
@click.option(
    "--validate-install-uninstall", is_flag=True,
    help="Also install the extension (backend started) and remove it, in a temporary dockext home.",
)
@handle_errors
def validate(
    target: str, errors_only: bool, auto_resolve_tag: bool, sdk_compatibility: bool, validate_install_uninstall: bool
) -> None:
    """Validate an extension image (labels, metadata.json and the files it names) or a metadata.json file.

    Prints every problem found with the field it concerns and how to fix it; exits 1 when there are errors."""
    from . import offline
    from . import validate as checks

    path = Path(target)
    # a path by the rules of install's FILE (`.`, `/x`, `./x`, a directory that is no image name...)
    looks_like_path = offline._looks_like_path(target)
    if path.is_dir() and (path / "metadata.json").is_file():
        path = path / "metadata.json"
    elif path.is_dir() and looks_like_path:
        raise DockextError(
            f"no metadata.json in {target}",
            hint="Give an extension image (IMAGE[:TAG]), a metadata.json, or a folder that holds one.",
        )
    if path.is_file() or target.endswith(".json") or looks_like_path:
        for flag, given in (("--auto-resolve-tag", auto_resolve_tag), ("--sdk-compatibility", sdk_compatibility),
                            ("--validate-install-uninstall", validate_install_uninstall)):
            if given:
                raise click.UsageError(f"{flag} needs an extension image, not a metadata.json file")
        report = checks.validate_file(path)
    else:
        report = checks.validate_image(
            target, reporter=CliReporter(out), auto_resolve_tag=auto_resolve_tag,
            sdk_compatibility=sdk_compatibility, install_uninstall=validate_install_uninstall,
        )
    for line in checks.render(report, errors_only=errors_only):
        click.echo(_printable(line))  # field names and values come from the image's metadata.json
    sys.exit(0 if report.valid else 1)


@cli.command()
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--name", help="The extension's name: its tab title and image title. Default: from DIR's name.")
@click.option("--description", metavar="TEXT", help="A short description (the image's description label).")
@click.option("--repository", metavar="NS/REPO", help="The image repository, e.g. acme/my-extension (the Makefile's "
              "IMAGE). Default: <login name>/<DIR's name>.")
@click.option("-f", "--force", is_flag=True, help="Write into DIR although it is not empty (files of the same names "
              "are replaced, the others are left alone).")
@handle_errors
def init(directory: str, name: str | None, description: str | None, repository: str | None, force: bool) -> None:
    """Create a new extension project in DIR: a plain HTML + JavaScript UI, a Python backend, a Dockerfile.

    It builds with plain `docker build` (no Node or Go toolchain). In a terminal, asks for the name, description
    and repository not given as options; otherwise derives them from DIR's name."""
    import shlex

    from . import scaffold

    target = Path(directory)
    scaffold.check_target(target, force=force)
    project = scaffold.project_values(target, name=name, description=description, repository=repository,
                                      interactive=sys.stdin.isatty())
    files = scaffold.render(project)
    replaced = scaffold.existing_files(target, files)
    scaffold.write_project(target, files, force=force)
    out.print(f"Created the extension {json.dumps(project.name, ensure_ascii=False)} in {directory}: "
              f"{', '.join(files)}", soft_wrap=True, markup=False)
    if replaced:
        out.print(f"Replaced the files that were there: {', '.join(replaced)}", soft_wrap=True, markup=False)
    out.print(f"\nNext steps:\n  cd {shlex.quote(directory)}\n"
              f"  make install-extension     # docker build -t {project.repository}:latest ., then dockext install\n"
              f"  dockext serve              # the dashboard: open the {project.name} tab\n"
              "  make help                  # update, validate...", soft_wrap=True, markup=False)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=7683, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--allow-host", multiple=True, help="Extra host name the dashboard answers to (with --host).")
@click.option("--domain", metavar="NAME",
              help="Serve the dashboard on NAME and each extension on EXTENSION.NAME instead of dockext.localhost "
                   "(for browsers on other machines: NAME and *.NAME must resolve to this one; needs --tls-cert).")
@click.option("--tls-cert", metavar="FILE", help="Serve HTTPS with this certificate (PEM; valid for NAME and *.NAME).")
@click.option("--tls-key", metavar="FILE", help="The certificate's private key (PEM, unencrypted).")
@click.option("--public-url", metavar="URL",
              help="Browsers open https://NAME[:PORT] through a proxy that serves HTTPS in front of dockext, for NAME "
                   "and *.NAME, and passes Host on unchanged (instead of --domain and --tls-*).")
@handle_errors
def serve(host: str, port: int, no_browser: bool, allow_host: tuple[str, ...], domain: str | None,
          tls_cert: str | None, tls_key: str | None, public_url: str | None) -> None:
    """Serve the dashboard. Prints a URL that carries the login token."""
    from .server.run import serve as run

    lay = layout()
    installer = Installer(lay)
    try:
        _said_recovered(installer, installer.recover())
    except DockextError as exc:
        err.print(f"Warning: could not finish interrupted operations: {exc.message}")
    run(lay, host=host, port=port, open_browser=not no_browser, allow_hosts=allow_host, domain=domain,
        tls_cert=tls_cert, tls_key=tls_key, public_url=public_url, echo=_print_line)


@cli.group()
def plugin() -> None:
    """Make `docker extension ...` run dockext (a Docker CLI plugin)."""


@plugin.command(name="install")
@click.option("-f", "--force", is_flag=True, help="Replace a docker-extension plugin dockext did not write.")
@handle_errors
def plugin_install(force: bool) -> None:
    """Write the `docker extension` plugin for this user ($DOCKER_CONFIG/cli-plugins)."""
    path = cliplugin.install(force=force)
    out.print(f"Installed {path}: `docker extension ...` (init, install, update, ls, rm or uninstall, validate, dev, "
              "share, version) now runs dockext.", soft_wrap=True)


@plugin.command(name="rm")
@handle_errors
def plugin_rm() -> None:
    """Remove the `docker extension` plugin, if dockext wrote it."""
    path = cliplugin.remove()
    out.print(f"Removed {path}." if path else "No docker extension plugin of dockext is installed.", soft_wrap=True)


@cli.group()
def marketplace() -> None:
    """The extensions of registries and lists (Docker Desktop's Marketplace), and the install allow-list."""


@marketplace.command(name="add")
@click.argument("spec", metavar="REGISTRY[/NAMESPACE]", required=False)
@click.option("--list", "list_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="An extensions.txt: one image per line (REPOSITORY[:TAG]), '#' comments.")
@click.option("--folder", "folder", metavar="DIR", type=click.Path(file_okay=False),
              help="A folder of `docker save` files and OCI layouts: an offline Marketplace, installed from the files.")
@handle_errors
def marketplace_add(spec: str | None, list_file: str | None, folder: str | None) -> None:
    """Add a source: a registry or one namespace of it (e.g. 127.0.0.1:5000/acme), --list FILE or --folder DIR.

    A registry is read with its catalog API: every repository under it whose image is an extension is listed, at
    its greatest semver tag. A list pins a version with :TAG; without one the greatest semver tag is offered. A
    folder is read at each look (files added later appear): its extensions install from their files, with no
    registry at all (from their cards in the dashboard, and `dockext install IMAGE:TAG` when the image cannot
    be pulled)."""
    from . import marketplace as mkt

    if sum(x is not None for x in (spec, list_file, folder)) != 1:
        raise click.UsageError("give one of REGISTRY[/NAMESPACE], --list FILE or --folder DIR")
    if folder is not None:
        source = mkt.add_folder(layout(), Path(folder))
        out.print(f"Added the folder {source.label}.", soft_wrap=True)
    elif list_file is not None:
        source = mkt.add_list(layout(), Path(list_file))
        out.print(f"Added the list {source.label} ({len(source.images)} image(s)).", soft_wrap=True)
    else:
        source = mkt.add_registry(layout(), str(spec))
        out.print(f"Added the registry source {source.label}.", soft_wrap=True)


@marketplace.command(name="rm")
@click.argument("source", metavar="SOURCE")
@handle_errors
def marketplace_rm(source: str) -> None:
    """Remove the source SOURCE, as `dockext marketplace ls` shows it (REGISTRY[/NAMESPACE] or the list's path)."""
    from . import marketplace as mkt

    removed = mkt.remove(layout(), source)
    out.print(f"Removed the marketplace source {removed.label}.", soft_wrap=True)


@marketplace.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: for people; json: every field, for scripts.")
@handle_errors
def marketplace_ls(fmt: str) -> None:
    """The sources, then the extensions they list: IMAGE, VERSION, TITLE, VENDOR, INSTALLED.

    A source that cannot be read is named on stderr with the reason; the others are still listed (exit 1 only
    when every source failed)."""
    from . import marketplace as mkt

    settings = mkt.load(layout())
    catalog = (mkt.browse(settings, insecure=_engine_insecure) if settings.sources
               else mkt.Catalog(entries=[], errors=[]))
    installed = {r.id: r.version for r in Store(layout()).records()}
    if fmt == "json":
        doc = {
            "only_listed": settings.only_listed,
            "sources": [{"source": s.label, "kind": s.kind} for s in settings.sources],
            "extensions": [
                {"image": e.image, "version": e.tag, "versions": list(e.tags), "title": e.title, "vendor": e.vendor,
                 "description": e.description, "source": e.source, "installed": installed.get(e.image),
                 "file": e.file}
                for e in catalog.entries
            ],
            "errors": [{"source": label, "message": message} for label, message in catalog.errors],
        }
        print(json.dumps(doc, indent=2))
    else:
        state = "on" if settings.only_listed else "off"
        if not settings.sources:
            out.print(f"No marketplace source (only-listed: {state}). Add one with: dockext marketplace add "
                      "REGISTRY[/NAMESPACE], --list FILE or --folder DIR", soft_wrap=True)
            return
        out.print(f"Sources (only-listed: {state}):", soft_wrap=True)
        for s in settings.sources:
            kinds = {"registry": "registry", "folder": "folder of files"}
            what = kinds.get(s.kind, f"list of {len(s.images)} image(s)")
            out.print(f"  {s.label}  ({what})", soft_wrap=True)
        out.print("")
        header = ("IMAGE", "VERSION", "TITLE", "VENDOR", "INSTALLED")
        rows = [(e.image, e.tag, e.title, e.vendor or "-", installed.get(e.image, "-")) for e in catalog.entries]
        out.print(_table(header, rows), soft_wrap=True, crop=False)  # never shortened: people copy these names
    for label, message in catalog.errors:
        err.print(Text.assemble(("Error:", "bold red"), " ", f"{label}: {message}"), soft_wrap=True)
    failed = {label for label, _ in catalog.errors}
    if settings.sources and all(s.label in failed for s in settings.sources):
        sys.exit(1)


@marketplace.command(name="only-listed")
@click.argument("state", type=click.Choice(["on", "off"]))
@handle_errors
def marketplace_only_listed(state: str) -> None:
    """on: refuse to install or update an extension no source lists (Docker Desktop's "Allow only extensions
    distributed through the Marketplace"); off: install anything."""
    from . import marketplace as mkt

    settings = mkt.set_only_listed(layout(), state == "on")
    if not settings.only_listed:
        out.print("Any extension can be installed now.", soft_wrap=True)
        return
    out.print("Only the extensions the marketplace sources list can be installed or updated now.", soft_wrap=True)
    if not settings.sources:
        err.print("Warning: there is no source yet, so every install is refused until you add one "
                  "(dockext marketplace add).", soft_wrap=True)


@cli.group(invoke_without_command=True)
@click.pass_context
@handle_errors
def permissions(ctx: click.Context) -> None:
    """What each extension may do on this host (docker, host, engine, system, network), and what its backend
    asked for."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(permissions_ls)


@permissions.command(name="ls")
@click.argument("extension", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: for people; json: every field, for scripts.")
@handle_errors
def permissions_ls(extension: str | None, fmt: str) -> None:
    """Each extension's grants (docker, host, web, engine, system, network) and what its backend gets from the host."""
    from . import permissions as perms

    lay = layout()
    records = Store(lay).records()
    if extension is not None:
        key = Installer(lay).key_for(extension)
        records = [r for r in records if r.key == key]
    grants = perms.load(lay)
    rows: list[dict[str, Any]] = []
    for r in records:
        g = grants.get(r.key, perms.DEFAULT)
        asked = perms.read_requested(lay.extension_dir(r.key))
        row: dict[str, Any] = {"id": r.id, "docker": g.docker, "host": g.host if r.host_binaries else None,
                               "web": g.web if r.ui is not None else None}
        for name in perms.BACKEND_NAMES:  # None: its backend does not ask for it
            row[name] = g.allows(name) if r.vm is not None and (asked is None or asked.asks(name)) else None
        row["withheld"] = list(r.vm.withheld) if r.vm else []
        row["backend"] = asked.lines() if asked is not None else None
        rows.append(row)
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    def word(row: dict[str, Any], name: str) -> str:
        if row[name] is None:
            return "-"
        said = "allowed" if row[name] else "denied"
        pending = name in perms.BACKEND_NAMES and row[name] == (name in row["withheld"])
        return said + (" (not applied yet)" if pending else "")

    unknown = "(not recorded: installed by an older dockext)"
    cells = [(row["id"], *(word(row, n) for n in perms.NAMES),
              unknown if row["backend"] is None else ("; ".join(row["backend"]) or "-")) for row in rows]
    header = ("ID", *(n.upper() for n in perms.NAMES), "BACKEND ASKS FOR")
    out.print(_table(header, cells, wrap="BACKEND ASKS FOR"), soft_wrap=True, crop=False)
    for r in records:
        g = grants.get(r.key, perms.DEFAULT)
        if r.vm is not None and perms.outdated(r.vm.policy, g):
            denied = [n for n in perms.BACKEND_NAMES if not g.allows(n)]
            err.print(f"{r.id}: its backend was restricted by an older dockext, whose rules cover less than today's; "
                      f"apply them with `dockext permissions set {r.id} {denied[0]}=deny`.", soft_wrap=True)


@permissions.command(name="set")
@click.argument("extension")
@click.argument("changes", nargs=-1, required=True, metavar="NAME=allow|deny...")
@handle_errors
def permissions_set(extension: str, changes: tuple[str, ...]) -> None:
    """Allow or deny EXTENSION a permission: docker, host, web (its UI: at once), engine, system, network (its
    backend: it is recreated without, or with, what they cover), each =allow or =deny."""
    from . import permissions as perms

    parsed: dict[str, bool] = {}
    for change in changes:
        name, _, value = change.partition("=")
        if name not in perms.NAMES or value not in ("allow", "deny"):
            raise click.UsageError(f"{change!r}: expected one of {', '.join(perms.NAMES)} =allow or =deny")
        parsed[name] = value == "allow"
    installer = Installer(layout(), reporter=CliReporter(out))
    grants, recreated = installer.set_permissions(extension, **parsed)
    said = ", ".join(f"{n} {'allowed' if grants.allows(n) else 'denied'}" for n in perms.NAMES if n in parsed)
    out.print(f"{extension}: {said}." + (" Its backend was recreated." if recreated else ""), soft_wrap=True)
    asked = perms.read_requested(layout().extension_dir(installer.key_for(extension)))
    if not grants.engine and grants.system and (asked is None or asked.asks("system")):
        out.print("Note: its backend keeps its host access (system), with which it can still reach the engine "
                  "(a privileged container, the host's processes or paths); deny system too to shut it out.",
                  soft_wrap=True)
    kept = [(name, what) for name, what in (("engine", "the engine's socket (a container it starts)"),
                                            ("system", "its host access (system)"))
            if grants.allows(name) and (asked is None or asked.asks(name))]  # only what its backend asks for
    if not grants.network and kept and (asked is None or asked.asks("network")):
        out.print(f"Note: its backend can still reach the network through {' or '.join(w for _, w in kept)}; deny "
                  f"{' and '.join(n for n, _ in kept)} too to cut it off.", soft_wrap=True)


@cli.command()
@click.argument("image")
@handle_errors
def share(image: str) -> None:
    """A link that offers IMAGE[:TAG] for install in a dockext dashboard (and Docker Desktop's, for its users).

    The link opens the dashboard's Marketplace with an install dialog for the image: nothing is installed until
    the person who opens it clicks Install. It names the running server's address (its port, and its name and
    scheme when served with --domain or --public-url), else the default one, which works as it is for anyone
    using dockext's default port."""
    from urllib.parse import quote, urlencode

    ref = model.ImageRef.parse(image)
    if ref.digest:  # neither link can carry one: the dashboard's names IMAGE[:TAG], Docker Desktop's a tag
        raise DockextError(
            f"a share link names an image by tag, and cannot carry the digest of {image}",
            hint=f"Share a tag: {_prog()} share {ref.name}:{ref.tag or 'TAG'}",
        )
    tag = ref.tag or "latest"
    base = _server_base() or "http://dockext.localhost:7683"
    link = f"{base}/#/marketplace/install/{quote(f'{ref.name}:{tag}', safe='/:')}"
    out.print(f"Share this link: {link}", soft_wrap=True)
    query = urlencode({"extensionId": ref.name, "tag": tag})
    out.print(f"In Docker Desktop: https://open.docker.com/extensions/marketplace?{query}", soft_wrap=True)


def _engine_insecure() -> Insecure | None:
    """The registries the engine reaches without verified TLS (Marketplace reads follow it); None when there is no
    engine to ask (it does not answer, or a DOCKER_HOST or context is wrong)."""
    with contextlib.suppress(DockextError):
        return Engine().insecure_registries()
    return None


def _server_base() -> str | None:
    """``scheme://name:port`` of the `dockext serve` running on this home, from its server.json (its URL without
    the token); None when none runs (a server killed without its cleanup leaves the file behind: its process is
    looked at, not only the file)."""
    from urllib.parse import urlsplit

    try:
        info = json.loads((layout().root / "server.json").read_text())
        url, pid = urlsplit(str(info["url"])), int(info["pid"])
        at = "" if url.port is None else f":{url.port}"  # none on the scheme's default port
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.hostname or not _is_dockext(pid):
        return None
    return f"{url.scheme}://{url.hostname}{at}"


def _is_dockext(pid: int) -> bool:
    """Whether process ``pid`` lives and runs dockext (not another program that was given its number since)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    except (OSError, OverflowError):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone since; or no /proc here, where alive is all one can tell
    except OSError:
        return True  # /proc hides other users' processes (hidepid): alive is all one can tell
    # `dockext serve`, `python -m dockext.cli serve`, the plugin's `python -m dockext.cliplugin extension serve`;
    # a zombie's command line is empty
    return any(re.fullmatch(r"dockext(\.\w+)*", os.path.basename(arg.decode(errors="replace"))) for arg in argv)


@cli.group()
def dev() -> None:
    """Extension development helpers (as `docker extension dev`); reopen the extension's tab after a change."""


@dev.command(name="ui-source")
@click.argument("extension")
@click.argument("url")
@handle_errors
def dev_ui_source(extension: str, url: str) -> None:
    """Load EXTENSION's UI from the dev server at URL (e.g. http://localhost:3000), with window.ddClient."""
    from . import devmode

    key = Installer(layout()).key_for(extension)
    settings = devmode.set_ui_source(layout(), key, url)
    out.print(f"The UI of {extension} now loads from {settings.ui_source}. Reopen its tab in the dashboard.",
              soft_wrap=True)


@dev.command(name="debug")
@click.argument("extension")
@handle_errors
def dev_debug(extension: str) -> None:
    """Log every ddClient call of EXTENSION's UI to the browser console (Docker Desktop opens DevTools)."""
    from . import devmode

    devmode.set_debug(layout(), Installer(layout()).key_for(extension))
    out.print(f"ddClient calls of {extension} are now logged to the browser console ([ddClient] ...). Reopen its "
              "tab in the dashboard and open the browser's developer tools.", soft_wrap=True)


@dev.command(name="reset")
@click.argument("extension")
@handle_errors
def dev_reset(extension: str) -> None:
    """Back to EXTENSION's packaged UI, without call logging."""
    from . import devmode

    lay = layout()
    key = model.extension_key(model.ImageRef.parse(extension))
    if key not in devmode.load(lay):  # settings left for an extension removed since can still be reset
        key = Installer(lay).key_for(extension)  # NotInstalled, as ui-source and debug say
    devmode.reset(lay, key)
    out.print(f"Developer mode of {extension} is off. Reopen its tab in the dashboard.", soft_wrap=True)


def _recover() -> None:
    """Finish (or roll back) an operation that a crash interrupted, so that what is listed is the truth.

    Skipped while another dockext process runs one: it is not interrupted then."""
    installer = Installer(layout())
    if not installer.needs_recovery():
        return
    try:
        keys = installer.recover(wait=False)
    except Busy:
        return
    _said_recovered(installer, keys)


def _said_recovered(installer: Installer, keys: list[str]) -> None:
    for key in keys:
        err.print(f"dockext: finished an interrupted install, update or removal of {key}")
    for key in installer.newer:
        err.print(f"dockext: an interrupted install, update or removal of {key} was left by a newer dockext; it is "
                  "left as it is: upgrade dockext to finish it", soft_wrap=True)


def _print_line(message: str) -> None:
    """Plain output for lines people copy (the login URL must never be wrapped)."""
    print(message, flush=True)


@cli.command()
def version() -> None:
    """Print the client and server API versions."""
    print(f"Client Version: v{__version__}\nServer API Version: {API_VERSION}")


#: a key no project has, in the states of `_vm_states`: [the engine's ID ("" if unknown), its address]
ELSEWHERE = "\0elsewhere"


def _vm_states(records: list[Record]) -> dict[str, list[str]] | None:
    if not any(r.vm for r in records):
        return {}
    try:
        engine = Engine()
        containers = engine.backend_containers()
        identity = engine.identity() if any(r.vm and r.vm.engine for r in records) else ""
    except Exception as exc:  # noqa: BLE001 - the list still prints when the engine is down
        err.print(f"dockext: the backends' states are unknown: {_as_run(reason(exc))}", soft_wrap=True)
        return None
    states: dict[str, list[str]] = {ELSEWHERE: [identity, engine.target.describe()]}
    for c in containers:
        project = (c.get("Labels") or {}).get("com.docker.compose.project", "")
        states.setdefault(project, []).append(str(c.get("State", "unknown")))
    return states


#: the engine's container states, in the order that breaks a tie between as many containers in each
_STATE_ORDER = ("running", "restarting", "paused", "created", "removing", "exited", "dead")


def _vm_summary(found: list[str]) -> str:
    """The VM column for a backend's containers in the states ``found``, as Docker Desktop shows it:
    ``Running(n)`` with n the containers running, if any runs; else the state most of them are in (a tie goes
    to the first in :data:`_STATE_ORDER`, then to the name), with the number of containers in that state.
    ``Missing(0)`` when there is none."""
    if not found:
        return "Missing(0)"
    counts = Counter(state.lower() for state in found)

    def rank(state: str) -> tuple[int, int, str]:
        known = _STATE_ORDER.index(state) if state in _STATE_ORDER else len(_STATE_ORDER)
        return (-counts[state], known, state)

    state = "running" if counts["running"] else min(counts, key=rank)
    return f"{state.capitalize()}({counts[state]})"


def _row(r: Record, states: dict[str, list[str]] | None) -> dict[str, Any]:
    if r.vm is None:
        vm = "-"
    elif states is None:
        vm = "Unknown(engine unreachable)"
    elif r.vm.elsewhere(*states.get(ELSEWHERE, ["", ""])[:2]):
        vm = "Elsewhere(0)"  # created on another engine: see the note under the table
    else:
        vm = _vm_summary(states.get(r.vm.project, []))
    return {
        "id": r.id,
        "provider": r.provider,
        "version": r.version,
        "ui": f"1 tab({r.ui.title})" if r.ui else "-",
        "vm": vm,
        "host": f"{len(r.host_binaries)} binarie(s)" if r.host_binaries else "-",
        "image": r.image,
        "title": r.title,
        "backend_engine": r.vm.engine_at if r.vm else None,
    }


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so that an install or update under way is rolled back."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def unwind_on_termination() -> None:
    """Python's default for SIGTERM is to die at once, leaving an install to the next command's recovery.
    Unwinding instead runs the installer's rollback now (`dockext serve` has uvicorn's own handlers)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)


def main() -> None:
    unwind_on_termination()
    cli()


if __name__ == "__main__":
    main()
