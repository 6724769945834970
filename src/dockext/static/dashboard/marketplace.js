/*
 * dockext dashboard: the Marketplace (#/marketplace). Lists the extensions of the sources configured with
 * `dockext marketplace add` (GET /api/marketplace) and installs, updates or removes them as jobs
 * (POST /api/marketplace/jobs, then GET /api/marketplace/jobs/<id> until it ends), after a confirmation like
 * the CLI's. Everything a catalog says comes from image labels: it is only ever put into the page as text.
 * "Install from file" sends a `docker save` file or an OCI archive (POST /api/marketplace/upload).
 */
(function () {
  "use strict";

  const dx = window.dockext;
  if (!dx) return;
  const el = dx.el;

  const MAX_UPLOAD = 16 * 2 ** 30; // bytes: the server's limit (marketplace_api.MAX_UPLOAD)
  const WARNING =
    "Extensions can install binaries, invoke commands and access files on your machine. Install only what you trust.";
  const STORE_ICON = ["M4 9h16l-1.5 11h-13z", "M8 9V7a4 4 0 0 1 8 0v2"];

  const section = el("section", "view view-marketplace");
  section.id = "view-marketplace";
  section.hidden = true;
  section.setAttribute("aria-label", "Marketplace");
  document.getElementById("panels").appendChild(section);

  const nav = el("button", "nav-item");
  nav.type = "button";
  nav.id = "marketplace-button";
  nav.dataset.panel = "#/marketplace";
  nav.title = "Marketplace"; // the name to see when the sidebar shows icons only
  const navIcon = dx.svg(STORE_ICON, 20, 1.8);
  navIcon.classList.add("nav-icon");
  nav.append(navIcon, el("span", "nav-label", "Marketplace"));
  nav.addEventListener("click", () => dx.navigate("#/marketplace"));
  document.getElementById("docker-nav").before(nav);

  let data = null; // the last GET /api/marketplace answer
  let query = "";
  let category = ""; // "" = every category
  let show = "all"; // all | installed | updates | available
  const SHOW = [
    ["all", "All extensions"],
    ["installed", "Installed"],
    ["updates", "Updates available"],
    ["available", "Not installed"],
  ];
  const running = new Map(); // image -> {action, line}: jobs started from this page
  const opened = new Set(); // images whose details are open (kept across re-renders)
  let els = null;

  function button(className, label, onClick) {
    const b = el("button", className, label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  // the dashboard's own letter icons (dashboard.css: ext-icon-letter, hue-0..7)
  function letterIcon(ext) {
    let h = 0;
    for (const ch of String(ext.image)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    const first = Array.from(String(ext.title || "?").trim())[0] || "?";
    const node = el("span", `ext-icon ext-icon-letter ext-icon-lg hue-${h % 8}`, first.toUpperCase());
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  function build() {
    const inner = el("div", "view-inner");
    const header = el("header", "view-header");
    const h1 = el("h1", null, "Marketplace");
    h1.tabIndex = -1;
    const summary = el("p", "view-summary", "");
    header.append(h1, summary);

    const toolbar = el("div", "toolbar");
    const search = el("div", "search");
    search.appendChild(dx.svg(["M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14z", "M20 20l-4-4"], 16, 1.8));
    const input = el("input", "search-input");
    input.type = "search";
    input.placeholder = "Search";
    input.setAttribute("aria-label", "Search the Marketplace");
    input.addEventListener("input", () => {
      query = input.value.trim().toLowerCase();
      render();
    });
    search.appendChild(input);
    // Docker Desktop's Browse tab filters by category; Manage lists what is installed: both here, as filters
    const categorySelect = el("select", "select-input");
    categorySelect.setAttribute("aria-label", "Category");
    categorySelect.addEventListener("change", () => {
      category = categorySelect.value;
      render();
    });
    const showSelect = el("select", "select-input");
    showSelect.setAttribute("aria-label", "Show");
    for (const [value, label] of SHOW) {
      const option = el("option", null, label);
      option.value = value;
      showSelect.appendChild(option);
    }
    showSelect.addEventListener("change", () => {
      show = showSelect.value;
      render();
    });
    const refresh = button("button button-secondary", "Refresh", () => load(true));
    const sourcesButton = button("button button-secondary", "Sources", () => editSources());
    const fileButton = button("button button-secondary", "Install from file", () => installFromFile());
    fileButton.id = "mk-install-file";
    const filters = el("div", "mk-filters");
    filters.append(categorySelect, showSelect);
    toolbar.append(search, filters, el("div", "toolbar-spacer"), fileButton, sourcesButton, refresh);

    const notes = el("div", "mk-notes");
    const body = el("div", "mk-body");
    inner.append(header, toolbar, notes, body);
    section.replaceChildren(inner);
    els = { h1, summary, notes, body, categorySelect };
  }

  async function load(fresh) {
    if (!els) build();
    if (!data) {
      const loading = el("div", "state-message");
      const spinner = el("span", "spinner");
      spinner.setAttribute("aria-hidden", "true");
      loading.append(spinner, "Loading the Marketplace…");
      els.body.replaceChildren(loading);
    }
    try {
      data = await dx.api("GET", fresh ? "/api/marketplace?refresh=1" : "/api/marketplace");
    } catch (error) {
      // as the other views show theirs (views.js errorState)
      const failure = el("div", "empty-state view-empty view-error");
      failure.setAttribute("role", "alert");
      failure.append(
        el("h2", null, "Cannot read the Marketplace"),
        el("p", "muted", error.message),
        button("button", "Try again", () => load(true)),
      );
      els.body.replaceChildren(failure);
      return;
    }
    render();
  }

  function matches(ext) {
    const categories = Array.isArray(ext.categories) ? ext.categories : [];
    if (category && !categories.includes(category)) return false;
    if (show === "installed" && !ext.installed) return false;
    if (show === "updates" && !(ext.installed && ext.update)) return false;
    if (show === "available" && ext.installed) return false;
    if (!query) return true;
    return [ext.title, ext.vendor, ext.description, ext.image, ...categories]
      .some((s) => String(s || "").toLowerCase().includes(query));
  }

  // The category choices: every category the listed extensions name, with how many name it. A chosen one that
  // no extension names any more (a source removed) falls back to all.
  function renderCategories(exts) {
    const counts = new Map();
    for (const ext of exts) {
      for (const c of new Set(Array.isArray(ext.categories) ? ext.categories.map(String) : [])) {
        counts.set(c, (counts.get(c) || 0) + 1);
      }
    }
    if (category && !counts.has(category)) category = "";
    const all = el("option", null, "All categories");
    all.value = "";
    const options = [all];
    for (const name of Array.from(counts.keys()).sort((a, b) => a.localeCompare(b))) {
      const option = el("option", null, `${name} (${counts.get(name)})`);
      option.value = name;
      options.push(option);
    }
    const select = els.categorySelect;
    select.replaceChildren(...options);
    select.value = category;
    select.hidden = counts.size === 0;
  }

  function render() {
    if (!els || !data) return;
    const exts = Array.isArray(data.extensions) ? data.extensions : [];
    const sources = Array.isArray(data.sources) ? data.sources : [];
    renderCategories(exts);
    els.summary.textContent = sources.length
      ? `${exts.length} extension${exts.length === 1 ? "" : "s"} from ${sources.length} source${sources.length === 1 ? "" : "s"}`
      : "";

    const notes = [];
    if (data.onlyListed) {
      notes.push(el("p", "mk-note", "Only the extensions listed here can be installed (dockext marketplace only-listed)."));
    }
    for (const e of Array.isArray(data.errors) ? data.errors : []) {
      notes.push(el("p", "mk-note mk-note-error", `${e.source}: ${e.message}`));
    }
    els.notes.replaceChildren(...notes);

    if (!sources.length) {
      const empty = el("div", "empty-state");
      empty.append(
        el("h2", null, "No Marketplace sources yet"),
        el("p", "muted", "Add a registry (all its extensions, or one namespace):"),
        button("button", "Add a registry", () => editSources()),
        el("p", "muted", "or, from a terminal, a list of extension images:"),
        command("dockext marketplace add --list extensions.txt"),
      );
      els.body.replaceChildren(empty);
      return;
    }
    const shown = exts.filter(matches);
    if (!shown.length) {
      els.body.replaceChildren(el("p", "state-message", exts.length ? "No extension matches." : "No extensions found."));
      return;
    }
    const grid = el("ul", "mk-grid");
    grid.setAttribute("aria-label", "Extensions");
    for (const ext of shown) grid.appendChild(card(ext));
    const focus = focusedControl();
    els.body.replaceChildren(grid);
    if (focus) restoreFocus(grid, focus);
  }

  // The cards are redrawn as a job goes on and when it ends: the control that had the focus gets it back, or,
  // when it is gone (Install became a progress line, the progress line became Open), what replaced it.
  function focusedControl() {
    const active = document.activeElement;
    const card = active && els.body.contains(active) ? active.closest(".mk-card") : null;
    if (!card) return null;
    const kind = Array.from(active.classList).find((c) => c.startsWith("mk-"));
    return { image: card.dataset.image, selector: kind ? `.${kind}` : active.tagName.toLowerCase() };
  }

  function restoreFocus(grid, focus) {
    const card = Array.from(grid.children).find((li) => li.dataset.image === focus.image);
    const target = card && (card.querySelector(focus.selector) || card.querySelector(".mk-progress, .mk-actions button"));
    if (target) target.focus({ preventScroll: true });
  }

  function command(text) {
    const box = el("div", "command");
    box.appendChild(el("code", null, text));
    return box;
  }

  function card(ext) {
    const li = el("li", "mk-card");
    li.dataset.image = ext.image;
    const head = el("div", "mk-head");
    const names = el("div", "mk-names");
    const title = el("h2", "mk-title", ext.title);
    names.append(title, el("p", "mk-vendor", ext.vendor || ""));
    head.append(letterIcon(ext), names, el("span", "mk-version", ext.tag));
    li.appendChild(head);
    if (ext.description) li.appendChild(el("p", "mk-description", ext.description));
    if (Array.isArray(ext.categories) && ext.categories.length) {
      const chips = el("div", "chips");
      for (const c of ext.categories) chips.appendChild(el("span", "chip", c));
      li.appendChild(chips);
    }
    li.appendChild(details(ext));

    const actions = el("div", "mk-actions");
    const job = running.get(ext.image);
    if (job) {
      const status = el("p", "mk-progress");
      status.setAttribute("role", "status");
      status.tabIndex = -1; // holds the focus of the button it replaced (render)
      status.append(el("span", "spinner"), el("span", "mk-progress-text", job.line));
      actions.appendChild(status);
    } else if (!ext.installed) {
      actions.appendChild(button("button mk-install", "Install", () => confirmThen(ext, "install")));
    } else {
      actions.appendChild(el("span", "mk-installed", `Installed ${ext.installed.version}`));
      if (ext.update) {
        actions.appendChild(button("button mk-update", `Update to ${ext.tag}`, () => confirmThen(ext, "update")));
      }
      actions.appendChild(
        button("button button-secondary mk-open", "Open", () => dx.navigate(`#/extensions/${encodeURIComponent(ext.installed.key)}`)),
      );
      actions.appendChild(button("button button-secondary mk-remove", "Remove", () => confirmThen(ext, "remove")));
    }
    li.appendChild(actions);
    return li;
  }

  function details(ext) {
    const box = el("details", "mk-details");
    box.open = opened.has(ext.image);
    box.addEventListener("toggle", () => (box.open ? opened.add(ext.image) : opened.delete(ext.image)));
    box.appendChild(el("summary", null, "Details"));
    const dl = el("dl", "mk-facts");
    const fact = (name, value) => {
      if (!value) return;
      dl.append(el("dt", null, name), el("dd", null, value));
    };
    fact("Image", `${ext.image}:${ext.tag}`);
    fact("Versions", (ext.tags || []).join(", "));
    fact("Source", ext.source);
    fact("File", ext.file); // a folder source: installed from this file, no registry needed
    box.appendChild(dl);
    if (ext.detailedDescription) box.appendChild(el("p", "mk-text", ext.detailedDescription));
    if (ext.changelog) {
      box.appendChild(el("h3", null, "Changelog"));
      box.appendChild(el("p", "mk-text", ext.changelog));
    }
    const links = el("p", "mk-links");
    if (ext.publisherUrl) links.appendChild(link(ext.publisherUrl, "Publisher"));
    (ext.screenshots || []).forEach((s, i) => links.appendChild(link(s.url, s.alt || `Screenshot ${i + 1}`)));
    if (links.childNodes.length) box.appendChild(links);
    return box;
  }

  // A link to an http(s) URL; anything else (the server keeps nothing else, but a catalog is attacker data) is
  // shown as text, never made live.
  function link(url, text) {
    let scheme = "";
    try {
      scheme = new URL(url).protocol;
    } catch {
      // not a URL: text
    }
    if (scheme !== "http:" && scheme !== "https:") return el("span", null, text);
    const a = el("a", null, text);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  // ------------------------------------------------------------------------------------- sources

  // The sources dialog: `dockext marketplace add REGISTRY[/NAMESPACE]` and `rm` from the dashboard.
  function editSources() {
    let changed = false; // reload the catalog when the dialog closes
    const dialog = el("dialog", "dx-dialog mk-sources");
    dialog.setAttribute("aria-labelledby", "dx-dialog-title");
    const title = el("h2", null, "Marketplace sources");
    title.id = "dx-dialog-title";
    const list = el("ul", "mk-source-list");
    const sources = data && Array.isArray(data.sources) ? data.sources : [];
    for (const s of sources) {
      const li = el("li");
      li.append(el("span", "mk-source-label", s.label), el("span", "mk-source-kind", s.kind));
      li.appendChild(
        button("button button-secondary", "Remove", async () => {
          try {
            await dx.api("DELETE", `/api/marketplace/sources?label=${encodeURIComponent(s.label)}`);
            li.remove();
            changed = true;
          } catch (error) {
            dx.toast("error", `Could not remove ${s.label}: ${error.message}`);
          }
        }),
      );
      list.appendChild(li);
    }
    const form = el("form", "mk-source-form");
    const label = el("label", null, "Registry or namespace");
    const input = el("input", "search-input");
    input.id = "mk-source-input";
    label.htmlFor = input.id;
    input.placeholder = "registry.example.com/acme";
    input.autocomplete = "off";
    input.spellcheck = false;
    const add = el("button", "button", "Add");
    add.type = "submit";
    const message = el("p", "mk-source-error");
    message.setAttribute("role", "alert");
    form.append(label, input, add);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      message.textContent = "";
      try {
        await dx.api("POST", "/api/marketplace/sources", { registry: input.value });
        changed = true;
        dialog.close();
      } catch (error) {
        message.textContent = error.message;
      }
    });
    const buttons = el("div", "dx-dialog-buttons");
    buttons.appendChild(button("button button-secondary", "Close", () => dialog.close()));
    dialog.append(title, list, form, message, buttons);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (changed) load(true);
    });
    dialog.showModal();
    input.focus();
  }

  // ------------------------------------------------------------------------------------- actions

  // The backend grants an install may withhold from the first start (`dockext install --deny`): a note and
  // a checkbox for each, each input pushed to `into` (its name is the grant's).
  function withholdBoxes(into) {
    const box = (name, label, hint) => {
      const row = el("label", "dx-check");
      const input = el("input");
      input.type = "checkbox";
      input.name = name;
      const words = el("span");
      words.append(el("strong", null, label), el("span", "dx-check-hint", hint));
      row.append(input, words);
      into.push(input);
      return row;
    };
    return [
      el("p", "dx-dialog-note", "If its backend asks for them, run it without:"),
      box("engine", "The engine socket", "full control of the Docker engine"),
      box("system", "Host access", "privileged mode, the host's network and processes, host paths, devices, ports open to the network"),
      box("network", "The network", "other machines and the internet: its containers reach only each other"),
    ];
  }

  function confirmThen(ext, action) {
    const dialog = el("dialog", "dx-dialog");
    dialog.setAttribute("aria-labelledby", "dx-dialog-title");
    const verb = { install: "Install", update: "Update", remove: "Remove" }[action];
    const title = el("h2", null, action === "update" ? `Update ${ext.title} to ${ext.tag}?` : `${verb} ${ext.title}?`);
    title.id = "dx-dialog-title";
    const text =
      action === "remove"
        ? "Its containers and files go; its named volumes are kept."
        : WARNING;
    const form = el("form");
    form.method = "dialog";
    const buttons = el("div", "dx-dialog-buttons");
    const cancel = el("button", "button button-secondary", "Cancel");
    cancel.value = "cancel";
    const ok = el("button", action === "remove" ? "button dx-danger" : "button", verb);
    ok.value = "ok";
    buttons.append(cancel, ok);
    form.append(title, el("p", null, text), el("p", "dx-ref", action === "remove" ? ext.image : `${ext.image}:${ext.tag}`));
    // What a backend may not have from its first start (`dockext install --deny`); later: its Change dialog.
    const withhold = [];
    if (action === "install") form.append(...withholdBoxes(withhold));
    form.append(buttons);
    dialog.appendChild(form);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => {
      dialog.remove();
      const deny = withhold.filter((input) => input.checked).map((input) => input.name);
      if (dialog.returnValue === "ok") start(ext, action, deny);
    });
    dialog.showModal();
    ok.focus();
  }

  async function start(ext, action, deny = []) {
    const image = action === "remove" ? ext.image : `${ext.image}:${ext.tag}`;
    running.set(ext.image, { action, line: { install: "Installing…", update: "Updating…", remove: "Removing…" }[action] });
    render();
    let job;
    try {
      const body = { action, image };
      if (deny.length) body.deny = deny;
      if (ext.file && action !== "remove") body.source = ext.source; // a folder's card: from its file
      job = (await dx.api("POST", "/api/marketplace/jobs", body)).job;
    } catch (error) {
      running.delete(ext.image);
      render();
      dx.toast("error", `Could not start: ${error.message}`);
      return;
    }
    try {
      job = await dx.followJob(job, (line) => {
        running.set(ext.image, { action, line });
        render();
      });
    } catch (error) {
      job = { state: "failed", error: { message: error.message } };
    }
    running.delete(ext.image);
    if (job.state === "done") {
      const done = { install: "installed", update: `updated to ${ext.tag}`, remove: "removed" }[action];
      dx.toast("success", `${ext.title} ${done}.`);
    } else {
      const e = job.error || {};
      dx.toast("error", `${ext.title}: ${e.message || "failed"}${e.hint ? `\n${e.hint}` : ""}`);
    }
    await load();
  }

  // ------------------------------------------------------------------------------------- install from a file

  // `dockext install FILE` for a file the browser has (a `docker save` file or an OCI archive): the file is
  // sent as the body of POST /api/marketplace/upload (XMLHttpRequest, for its upload progress), then the job
  // is followed as the others are. The dialog stays open on failure, with the reason, to try another file.
  function installFromFile() {
    const dialog = el("dialog", "dx-dialog mk-file");
    dialog.setAttribute("aria-labelledby", "dx-dialog-title");
    const title = el("h2", null, "Install from a file");
    title.id = "dx-dialog-title";
    const form = el("form");
    const intro = el(
      "p",
      null,
      "A file made with docker save (gzip, bzip2 or xz compressed if you like) or an OCI archive: no registry is needed.",
    );
    const fileLabel = el("label", "mk-field", "File");
    const file = el("input");
    file.type = "file";
    file.id = "mk-file-input";
    file.accept = ".tar,.tgz,.gz,.bz2,.xz,.tar.gz,application/x-tar";
    file.required = true;
    fileLabel.htmlFor = file.id;
    const imageLabel = el("label", "mk-field", "Image (only for a file with several images, or without a name)");
    const image = el("input", "search-input");
    image.id = "mk-file-image";
    image.placeholder = "acme/my-extension:1.0.0";
    image.autocomplete = "off";
    image.spellcheck = false;
    imageLabel.htmlFor = image.id;
    const withhold = [];
    const progress = el("p", "mk-progress");
    progress.setAttribute("role", "status");
    progress.hidden = true;
    const progressText = el("span", "mk-progress-text");
    progress.append(el("span", "spinner"), progressText);
    const message = el("p", "mk-source-error");
    message.setAttribute("role", "alert");
    const buttons = el("div", "dx-dialog-buttons");
    const cancel = button("button button-secondary", "Cancel", () => dialog.close());
    const ok = el("button", "button", "Install");
    ok.type = "submit";
    buttons.append(cancel, ok);
    form.append(
      title, intro, fileLabel, file, imageLabel, image, ...withholdBoxes(withhold),
      el("p", "dx-dialog-note", WARNING), progress, message, buttons,
    );
    let busy = null; // the XMLHttpRequest while the file is sent
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      message.textContent = "";
      if (chosen.size > MAX_UPLOAD) {
        message.textContent =
          `${chosen.name} is larger than the 16 GiB an upload may be: copy it to the server and run dockext install there.`;
        return;
      }
      ok.disabled = file.disabled = image.disabled = true;
      progress.hidden = false;
      progressText.textContent = `Sending ${chosen.name}…`;
      const query = new URLSearchParams({ name: chosen.name });
      if (image.value.trim()) query.set("image", image.value.trim());
      const deny = withhold.filter((input) => input.checked).map((input) => input.name);
      if (deny.length) query.set("deny", deny.join(","));
      try {
        let job = await send(`/api/marketplace/upload?${query}`, chosen, (done, total) => {
          progressText.textContent = `Sending ${chosen.name}: ${Math.floor((100 * done) / Math.max(total, 1))} %`;
        }, (xhr) => (busy = xhr));
        busy = null;
        job = await dx.followJob(job, (line) => (progressText.textContent = line));
        if (job.state === "done") {
          const last = job.steps.length ? job.steps[job.steps.length - 1] : "";
          dx.toast("success", /installed successfully/.test(last) ? `${last}.` : `Installed from ${chosen.name}.`);
          if (dialog.open) dialog.close();
          load();
          return;
        }
        const e = job.error || {};
        throw new Error(`${e.message || "failed"}${e.hint ? `\n${e.hint}` : ""}`);
      } catch (error) {
        busy = null;
        if (!dialog.isConnected) {
          // the dialog was closed while the file was installed: the outcome still reaches the person
          dx.toast("error", `${chosen.name}: ${error.message}`);
          return;
        }
        progress.hidden = true;
        message.textContent = error.message;
        ok.disabled = file.disabled = image.disabled = false;
      }
    });
    dialog.append(form);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => {
      if (busy) busy.abort(); // closing while the file is sent stops the upload: the server keeps nothing
      dialog.remove();
    });
    dialog.showModal();
    file.focus();
  }

  // A job until it ends; `onStep` gets its latest line. A job the server no longer knows (it restarted: jobs
  // are not kept) ends the wait with that said, instead of asking for ever.
  // POST a File as the raw body, with progress; resolves with the job, rejects with the server's message.
  function send(path, body, onProgress, onStart) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("X-Dockext", "1");
      const key = dx.key();
      xhr.setRequestHeader("X-Dockext-Key", key);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.total));
      xhr.addEventListener("load", () => {
        let data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch (_) {
          data = null;
        }
        if (xhr.status === 401) {
          // not sent again by itself (the file may be large): the user does, once this browser's new key is here
          dx.keyReplaced(key).then((replaced) => {
            if (!replaced) window.location.assign("/login");
            reject(new Error(replaced ? "this browser logged in again meanwhile: send the file again"
                                      : "your dockext session has ended"));
          });
          return;
        }
        if (xhr.status === 202 && data && data.job) resolve(data.job);
        else reject(new Error((data && data.error && data.error.message) || `HTTP ${xhr.status}`));
      });
      xhr.addEventListener("error", () => reject(new Error("the upload failed: the connection was lost")));
      xhr.addEventListener("abort", () => reject(new Error("the upload was stopped")));
      onStart(xhr);
      xhr.send(body);
    });
  }

  // `dockext share` links: #/marketplace/install/<image:tag>. They only open the install dialog: nothing is
  // installed without the click on Install (a link must never start anything by itself).
  const INSTALL_LINK = "#/marketplace/install/";

  async function offerShared(ref) {
    window.history.replaceState(null, "", "#/marketplace"); // a reload does not ask again
    const at = ref.lastIndexOf(":");
    const tagged = at > ref.lastIndexOf("/");
    const image = tagged ? ref.slice(0, at) : ref;
    const tag = tagged ? ref.slice(at + 1) : "latest";
    await load();
    const listed = data && Array.isArray(data.extensions) ? data.extensions.find((e) => e.image === image) : null;
    const name = image.split("/").pop();
    confirmThen({ ...(listed || {}), title: listed ? listed.title : name, image, tag }, "install");
  }

  dx.panel("#/marketplace", section, (hash) => {
    document.title = "Marketplace · dockext";
    if (hash.startsWith(INSTALL_LINK) && hash.length > INSTALL_LINK.length) {
      let ref = "";
      try {
        ref = decodeURIComponent(hash.slice(INSTALL_LINK.length));
      } catch (_) {
        ref = "";
      }
      if (/^[A-Za-z0-9][A-Za-z0-9._\/:-]*$/.test(ref)) { // IMAGE[:TAG], as `dockext share` makes them
        offerShared(ref);
        return;
      }
      dx.toast("warning", "That install link names no image.");
    }
    load();
  });
})();
