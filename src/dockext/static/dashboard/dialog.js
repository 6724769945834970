/*
 * dockext dashboard: the file dialog behind ddClient.desktopUI.dialog.showOpenDialog.
 *
 * The open extension frame posts {dockext: "dialog", id, options} (docs/design.md, "Messages between an
 * extension frame and the dashboard"); dashboard.js checks the sender and passes it here through
 * window.dockext.handle("dialog", fn); the value fn resolves with, {canceled, filePaths}, is the reply. The user
 * browses the host through GET /api/fs/list (server/fsapi.py, dashboard origin only): the extension learns
 * nothing but the paths the user picked, and nothing at all when the dialog is cancelled.
 *
 * Options honoured (Electron's showOpenDialog, which Docker Desktop passes through): properties openFile,
 * openDirectory, multiSelections, showHiddenFiles; filters [{name, extensions: ["json", "*"]}]; defaultPath
 * (a folder, or a file to preselect; "~" is the home folder); title; buttonLabel; message. Everything from the
 * extension is untrusted and only ever shown as text.
 *
 * Keyboard: arrows, Home/End, PageUp/PageDown move; Shift/Ctrl extend (multiSelections); Space toggles;
 * Enter opens a folder or chooses a file; Ctrl+Enter chooses the selection (or, for folders, the current one);
 * Backspace or Alt+Up goes to the parent; Ctrl+L types a path; Ctrl+H shows hidden files; typing a name jumps
 * to it; Escape cancels. Focus stays inside the dialog; the rest of the page is inert while it is open.
 */
(function () {
  "use strict";

  const dockext = window.dockext;
  if (!dockext) {
    console.error("dockext: dialog.js needs window.dockext (dashboard.js)");
    return;
  }

  const MAX = { title: 200, message: 1000, button: 40, filterName: 100, filters: 50, extensions: 50, path: 4096 };
  const ICONS = {
    dir: ["M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"],
    file: ["M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z", "M14 3v5h5"],
    other: ["M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z", "M9.5 9.5a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .8-1 1.5v.2", "M12 17h.01"],
    up: ["M12 19V5", "M5 12l7-7 7 7"],
    home: ["M3 10.5 12 3l9 7.5", "M5 9.5V20h14V9.5", "M10 20v-6h4v6"],
    edit: ["M4 20h4L19 9l-4-4L4 16z", "M13.5 6.5l4 4"],
    close: ["M6 6l12 12", "M18 6 6 18"],
    open: ["M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v1", "M3 7v10a2 2 0 0 0 2 2h12l4-8H8l-3 6"],
  };

  // ------------------------------------------------------------------------------------------ helpers

  const el = dockext.el; // shared with dashboard.js: text is set as text, never parsed as HTML

  function icon(name, size) {
    return dockext.svg(ICONS[name], size || 18, 1.8);
  }

  function iconButton(name, label, className) {
    const button = el("button", `icon-button fd-icon-button ${className || ""}`.trim());
    button.type = "button";
    button.setAttribute("aria-label", label);
    button.title = label;
    button.appendChild(icon(name, 18));
    return button;
  }

  function str(value, max) {
    return typeof value === "string" ? value.slice(0, max) : "";
  }

  function joinPath(dir, name) {
    return dir === "/" ? `/${name}` : `${dir}/${name}`;
  }

  function dirname(path) {
    const i = path.lastIndexOf("/");
    return i <= 0 ? "/" : path.slice(0, i);
  }

  function basename(path) {
    return path.slice(path.lastIndexOf("/") + 1);
  }

  function formatSize(bytes) {
    if (typeof bytes !== "number") return "";
    if (bytes < 1000) return `${bytes} B`;
    const units = ["kB", "MB", "GB", "TB", "PB"];
    let value = bytes;
    let unit = -1;
    do {
      value /= 1000;
      unit += 1;
    } while (value >= 1000 && unit < units.length - 1);
    return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
  }

  const DATE_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  function formatDate(seconds) {
    return typeof seconds === "number" ? DATE_FORMAT.format(new Date(seconds * 1000)) : "";
  }

  // ------------------------------------------------------------------------------------------ options

  // Electron's dialogProperties, from an untrusted page: only the known fields, with the right types and sizes.
  function parseOptions(raw) {
    const o = raw && typeof raw === "object" ? raw : {};
    const props = new Set(Array.isArray(o.properties) ? o.properties.filter((p) => typeof p === "string") : []);
    const openDirectory = props.has("openDirectory");
    const openFile = props.has("openFile") || !openDirectory; // Electron's default is openFile
    const filters = [];
    for (const f of Array.isArray(o.filters) ? o.filters.slice(0, MAX.filters) : []) {
      if (!f || typeof f !== "object" || !Array.isArray(f.extensions)) continue;
      const extensions = [];
      for (const e of f.extensions.slice(0, MAX.extensions)) {
        if (typeof e !== "string") continue;
        const ext = e.trim().replace(/^\*?\./, "").toLowerCase(); // "json", ".json" and "*.json" all mean .json
        if (ext && ext.length <= 32 && !extensions.includes(ext)) extensions.push(ext);
      }
      if (extensions.length === 0) continue;
      const patterns = extensions.map((ext) => (ext === "*" ? "*" : `*.${ext}`)).join(", ");
      const name = str(f.name, MAX.filterName).trim();
      filters.push({ label: name ? `${name} (${patterns})` : patterns, extensions });
    }
    return {
      openFile,
      openDirectory,
      multi: props.has("multiSelections"),
      showHidden: props.has("showHiddenFiles"),
      filters,
      defaultPath: str(o.defaultPath, MAX.path),
      title: str(o.title, MAX.title).trim(),
      buttonLabel: str(o.buttonLabel, MAX.button).trim(),
      message: str(o.message, MAX.message).trim(),
    };
  }

  function what(opts) {
    if (opts.openFile && opts.openDirectory) return opts.multi ? "files or folders" : "a file or folder";
    if (opts.openDirectory) return opts.multi ? "folders" : "a folder";
    return opts.multi ? "files" : "a file";
  }

  // ------------------------------------------------------------------------------------------- server

  // GET /api/fs/list: {ok: true, data} or {ok: false, type, message}. A request that fails at the network
  // level is tried once more: Chromium aborts requests in flight whenever a network interface comes or goes
  // (ERR_NETWORK_CHANGED), which Docker does each time it starts a container.
  async function listDir(path, retried, rekeyed) {
    const key = window.dockext.key();
    let response;
    try {
      response = await fetch(`/api/fs/list?path=${encodeURIComponent(path)}`, {
        headers: { "X-Dockext": "1", "X-Dockext-Key": key },
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (error) {
      if (!retried) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        return listDir(path, true, rekeyed);
      }
      return { ok: false, type: "Unreachable", message: `dockext is unreachable (${error.message})` };
    }
    if (response.status === 401) {
      if (!rekeyed && (await window.dockext.keyReplaced(key))) return listDir(path, retried, true);
      window.location.assign("/login");
      return { ok: false, type: "Unauthorized", message: "your dockext session has ended" };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (response.ok && body && Array.isArray(body.entries)) return { ok: true, data: body };
    const error = (body && body.error) || {};
    return { ok: false, type: String(error.type || "Error"), message: String(error.message || `HTTP ${response.status}`) };
  }

  async function homeDir() {
    try {
      const body = await dockext.api("GET", "/api/fs/home");
      if (body && typeof body.path === "string" && body.path.startsWith("/")) return body.path;
    } catch (error) {
      console.warn("dockext: could not read the home folder:", error);
    }
    return "/";
  }

  // ------------------------------------------------------------------------------------------- dialog

  let uid = 0;

  /** Shows the dialog; resolves {canceled, filePaths} when the user chooses, cancels, or the frame goes away. */
  function openDialog(opts, source, frame) {
    return new Promise((resolve) => {
      const n = ++uid;
      const st = {
        path: "/",
        home: "/",
        entries: [], // from the server
        visible: [], // shown, in order
        active: -1, // index in visible of the keyboard cursor
        selected: new Set(), // names
        anchor: -1,
        showHidden: opts.showHidden,
        filter: 0,
        error: null,
        truncated: false,
        unnamed: 0, // entries whose names are not UTF-8: not listed (the server counts them)
        loading: 0, // sequence number of the listing in flight (0: none)
        typed: "",
        typedAt: 0,
        done: false,
      };

      // --- DOM
      const backdrop = el("div", "fd-backdrop");
      const dialog = el("div", "fd");
      dialog.setAttribute("role", "dialog");
      dialog.setAttribute("aria-modal", "true");
      dialog.setAttribute("aria-labelledby", `fd-title-${n}`);
      dialog.setAttribute("aria-describedby", `fd-desc-${n}`);

      const head = el("div", "fd-head");
      const headText = el("div", "fd-head-text");
      const requester = el("p", "fd-requester");
      requester.id = `fd-desc-${n}`;
      const who = el("strong", "fd-requester-name", source.title);
      requester.append(who, ` asks you to choose ${what(opts)}`);
      const title = el("h2", "fd-title", opts.title || `Choose ${what(opts)}`);
      title.id = `fd-title-${n}`;
      headText.append(requester, title);
      if (opts.message) headText.appendChild(el("p", "fd-message", opts.message));
      const closeButton = iconButton("close", "Close", "fd-close");
      head.append(headText, closeButton);

      const toolbar = el("div", "fd-toolbar");
      const upButton = iconButton("up", "Parent folder (Backspace)", "fd-up");
      const homeButton = iconButton("home", "Home folder", "fd-home");
      const crumbs = el("nav", "fd-crumbs");
      crumbs.setAttribute("aria-label", "Folder path");
      const crumbList = el("ol", "fd-crumb-list");
      crumbs.appendChild(crumbList);
      const location = el("input", "fd-location");
      location.type = "text";
      location.spellcheck = false;
      location.autocomplete = "off";
      location.setAttribute("aria-label", "Go to folder");
      location.placeholder = "Type a path and press Enter";
      location.hidden = true;
      const editButton = iconButton("edit", "Type a path (Ctrl+L)", "fd-edit");
      toolbar.append(upButton, homeButton, crumbs, location, editButton);

      const body = el("div", "fd-body");
      const columns = el("div", "fd-columns");
      columns.setAttribute("aria-hidden", "true");
      columns.append(el("span", "fd-col-name", "Name"), el("span", "fd-col-size", "Size"),
        el("span", "fd-col-date", "Modified"));
      const list = el("div", "fd-list");
      list.setAttribute("role", "listbox");
      list.tabIndex = 0;
      if (opts.multi) list.setAttribute("aria-multiselectable", "true");
      const status = el("div", "fd-state");
      status.setAttribute("role", "status");
      body.append(columns, list, status);

      const foot = el("div", "fd-foot");
      const options = el("div", "fd-options");
      const hiddenLabel = el("label", "fd-check");
      const hiddenBox = el("input");
      hiddenBox.type = "checkbox";
      hiddenBox.checked = st.showHidden;
      hiddenLabel.append(hiddenBox, el("span", "", "Show hidden files"));
      options.appendChild(hiddenLabel);
      let filterSelect = null;
      if (opts.filters.length > 0) {
        filterSelect = el("select", "fd-filter");
        filterSelect.setAttribute("aria-label", "File type");
        opts.filters.forEach((f, i) => {
          const option = el("option", "", f.label);
          option.value = String(i);
          filterSelect.appendChild(option);
        });
        options.appendChild(filterSelect);
      }
      const summary = el("p", "fd-summary");
      summary.setAttribute("aria-live", "polite");
      const actions = el("div", "fd-actions");
      const cancelButton = el("button", "fd-button fd-cancel", "Cancel");
      cancelButton.type = "button";
      const confirmButton = el("button", "fd-button fd-primary fd-confirm",
        opts.buttonLabel || (opts.openDirectory && !opts.openFile ? "Select" : "Open"));
      confirmButton.type = "button";
      actions.append(cancelButton, confirmButton);
      foot.append(options, summary, actions);

      const hint = el("p", "fd-hint");
      const keys = [["↑↓", "move"], ["Enter", "open folder"], ["Ctrl+Enter", "choose"], ["Backspace", "up"],
        ["Esc", "cancel"]];
      if (opts.multi) keys.splice(2, 0, ["Shift/Ctrl", "select more"]);
      keys.forEach(([k, label], i) => {
        if (i > 0) hint.append(" · ");
        hint.append(el("kbd", "", k), ` ${label}`);
      });

      dialog.append(head, toolbar, body, foot, hint);
      backdrop.appendChild(dialog);

      // --- the rest of the page is inert while the dialog is open; focus comes back afterwards
      const root = document.getElementById("dialog-root") || document.body;
      const returnFocus = document.activeElement;
      const dialogEnded = []; // what finish() undoes (document listeners)
      const madeInert = [];
      for (const child of Array.from(document.body.children)) {
        if (child !== root && !child.contains(root) && !child.inert) {
          child.inert = true;
          madeInert.push(child);
        }
      }
      root.appendChild(backdrop);

      // --- the requesting frame may go away (tab closed, extension removed): then the dialog goes too
      let observer = null;
      if (frame && frame.parentNode) {
        observer = new MutationObserver(() => {
          if (!frame.isConnected) finish(null);
        });
        observer.observe(frame.parentNode, { childList: true });
      }

      function finish(paths) {
        if (st.done) return;
        st.done = true;
        for (const end of dialogEnded) end();
        if (observer) observer.disconnect();
        backdrop.remove();
        for (const node of madeInert) node.inert = false;
        if (returnFocus && returnFocus.isConnected && typeof returnFocus.focus === "function") {
          returnFocus.focus({ preventScroll: true });
        }
        resolve(paths ? { canceled: false, filePaths: paths } : { canceled: true, filePaths: [] });
      }

      // --- what is shown
      function matchesFilter(name) {
        if (!filterSelect) return true;
        const f = opts.filters[st.filter];
        const lower = name.toLowerCase();
        return f.extensions.some((ext) => ext === "*" || lower.endsWith(`.${ext}`));
      }

      function selectable(entry) {
        return (entry.type === "dir" && opts.openDirectory) || (entry.type === "file" && opts.openFile);
      }

      function computeVisible() {
        st.visible = st.entries.filter(
          (e) => (st.showHidden || !e.hidden) && (e.type === "dir" || (e.type === "file" && matchesFilter(e.name)) ||
            (e.type === "other" && !filterSelect)),
        );
        const names = new Set(st.visible.map((e) => e.name));
        for (const name of Array.from(st.selected)) if (!names.has(name)) st.selected.delete(name);
      }

      function chosenPaths() {
        const picked = st.visible.filter((e) => st.selected.has(e.name) && selectable(e));
        if (picked.length > 0) return picked.map((e) => joinPath(st.path, e.name));
        if (opts.openDirectory && !st.error && !st.loading) return [st.path];
        return [];
      }

      function renderCrumbs() {
        crumbList.replaceChildren();
        const parts = st.path === "/" ? [] : st.path.slice(1).split("/");
        const items = [{ label: "/", path: "/", root: true }];
        parts.forEach((part, i) => items.push({ label: part, path: `/${parts.slice(0, i + 1).join("/")}` }));
        items.forEach((item, i) => {
          const li = el("li", "fd-crumb");
          const button = el("button", item.root ? "fd-crumb-button fd-crumb-root" : "fd-crumb-button", item.label);
          button.type = "button";
          if (item.root) button.setAttribute("aria-label", "Root folder /");
          if (i === items.length - 1) button.setAttribute("aria-current", "location");
          button.title = item.path;
          button.addEventListener("click", () => load(item.path));
          li.appendChild(button);
          crumbList.appendChild(li);
        });
        crumbs.scrollLeft = crumbs.scrollWidth;
      }

      function rowId(i) {
        return `fd-${n}-opt-${i}`;
      }

      function renderList() {
        list.replaceChildren();
        list.setAttribute("aria-label", `Contents of ${st.path}`);
        st.visible.forEach((entry, i) => {
          const row = el("div", `fd-row fd-${entry.type}`);
          row.id = rowId(i);
          row.setAttribute("role", "option");
          row.dataset.index = String(i);
          row.dataset.name = entry.name;
          row.dataset.type = entry.type;
          const ok = selectable(entry) || entry.type === "dir";
          if (!ok) row.setAttribute("aria-disabled", "true");
          row.setAttribute("aria-selected", st.selected.has(entry.name) ? "true" : "false");
          if (entry.hidden) row.classList.add("fd-hidden-entry");
          const glyph = el("span", "fd-glyph");
          glyph.appendChild(icon(entry.type === "dir" ? "dir" : entry.type === "file" ? "file" : "other", 18));
          const name = el("span", "fd-name", entry.name);
          name.title = entry.name;
          row.append(glyph, name, el("span", "fd-size", formatSize(entry.size)),
            el("span", "fd-date", formatDate(entry.mtime)));
          list.appendChild(row);
        });
        renderStatus();
        renderActive(false);
        renderSummary();
      }

      function renderStatus() {
        status.replaceChildren();
        status.className = "fd-state";
        if (st.loading) {
          status.classList.add("fd-state-loading");
          status.append(el("span", "spinner"), el("span", "", "Loading…"));
        } else if (st.error) {
          status.classList.add("fd-state-error");
          status.append(el("strong", "", "Cannot open this folder"), el("span", "", st.error));
        } else if (st.visible.length === 0) {
          const hiddenCount = st.entries.length - st.visible.length;
          status.append(el("span", "", st.entries.length === 0 ? "This folder is empty" :
            `Nothing to show here (${hiddenCount} hidden or filtered out)`));
        } else if (st.truncated) {
          status.classList.add("fd-state-note");
          status.append(el("span", "", `Only the first ${st.entries.length} entries are shown`));
        } else if (st.unnamed) {
          status.classList.add("fd-state-note");
          status.append(el("span", "", `${st.unnamed} ${st.unnamed === 1 ? "entry is" : "entries are"} not shown: ` +
            "names that are not UTF-8 text"));
        }
        status.hidden = status.childNodes.length === 0;
      }

      function renderActive(scroll) {
        for (const row of list.querySelectorAll(".fd-row.fd-active")) row.classList.remove("fd-active");
        const row = st.active >= 0 ? document.getElementById(rowId(st.active)) : null;
        if (row) {
          row.classList.add("fd-active");
          list.setAttribute("aria-activedescendant", row.id);
          if (scroll) row.scrollIntoView({ block: "nearest" });
        } else {
          list.removeAttribute("aria-activedescendant");
        }
      }

      function renderSelection() {
        for (const row of list.querySelectorAll(".fd-row")) {
          row.setAttribute("aria-selected", st.selected.has(row.dataset.name) ? "true" : "false");
        }
        renderSummary();
      }

      function renderSummary() {
        const picked = st.visible.filter((e) => st.selected.has(e.name) && selectable(e));
        const paths = chosenPaths();
        if (picked.length === 1) summary.textContent = picked[0].name;
        else if (picked.length > 1) summary.textContent = `${picked.length} items selected`;
        else if (paths.length === 1) summary.textContent = `This folder: ${basename(paths[0]) || "/"}`;
        else summary.textContent = `No ${opts.openFile ? "file" : "folder"} selected`;
        summary.title = paths.join("\n");
        confirmButton.disabled = paths.length === 0;
      }

      // --- navigation
      async function load(path, preselect, prefetched) {
        const seq = ++uid;
        st.loading = seq;
        const slow = setTimeout(() => {
          if (st.loading === seq) renderStatus();
        }, 150);
        const result = prefetched || (await listDir(path));
        clearTimeout(slow);
        if (st.done || st.loading !== seq) return result;
        st.loading = 0;
        st.selected.clear();
        st.active = -1;
        st.anchor = -1;
        if (result.ok) {
          st.path = result.data.path;
          st.entries = result.data.entries;
          st.truncated = Boolean(result.data.truncated);
          st.unnamed = Number(result.data.unnamed) || 0;
          st.error = null;
        } else {
          st.path = path;
          st.entries = [];
          st.truncated = false;
          st.unnamed = 0;
          st.error = result.message;
        }
        computeVisible();
        if (preselect) {
          const i = st.visible.findIndex((e) => e.name === preselect);
          if (i >= 0) {
            st.active = i;
            st.anchor = i;
            if (selectable(st.visible[i])) st.selected.add(preselect);
          }
        }
        if (st.active < 0 && st.visible.length > 0) st.active = 0;
        upButton.disabled = st.path === "/";
        renderCrumbs();
        renderList();
        renderActive(true);
        return result;
      }

      // Up one level; from a folder that could not be listed, up to the nearest one that can.
      async function goUp() {
        if (st.path === "/") return;
        let path = st.path;
        let result = null;
        do {
          const child = basename(path);
          path = dirname(path);
          result = st.error ? await listDir(path) : null;
          if (st.done) return;
          if (!result || result.ok || path === "/") return load(path, child, result);
        } while (path !== "/");
      }

      function expandHome(path) {
        if (path === "~") return st.home;
        if (path.startsWith("~/")) return joinPath(st.home, path.slice(2));
        return path;
      }

      // A typed or default path: a folder opens; a file opens its folder with the file selected. A default path
      // that does not exist (yet) opens its folder, as a name to save under would; a typed one is an error.
      async function goTo(raw, isDefault) {
        const path = expandHome(raw.trim());
        if (!path.startsWith("/")) return load(st.path === "/" ? `/${path}` : `${st.path}/${path}`);
        const clean = path.length > 1 ? path.replace(/\/+$/, "") : path;
        const result = await listDir(clean);
        if (st.done) return result;
        if (result.ok) return load(clean, null, result);
        if (result.type === "NotADirectory" || (isDefault && result.type === "NotFound")) {
          return load(dirname(clean), basename(clean));
        }
        return load(clean, null, result);
      }

      function openEntry(entry) {
        if (entry.type === "dir") load(joinPath(st.path, entry.name));
      }

      function confirm() {
        const paths = chosenPaths();
        if (paths.length > 0) finish(paths);
      }

      // --- selection
      function setActive(i, how) {
        if (st.visible.length === 0) return;
        i = Math.max(0, Math.min(st.visible.length - 1, i));
        st.active = i;
        const entry = st.visible[i];
        if (how === "range" && opts.multi && st.anchor >= 0) {
          st.selected.clear();
          const [a, b] = st.anchor < i ? [st.anchor, i] : [i, st.anchor];
          for (let k = a; k <= b; k++) if (selectable(st.visible[k])) st.selected.add(st.visible[k].name);
        } else if (how === "toggle" && opts.multi) {
          if (selectable(entry)) {
            if (st.selected.has(entry.name)) st.selected.delete(entry.name);
            else st.selected.add(entry.name);
          }
          st.anchor = i;
        } else if (how === "move") {
          // Ctrl+arrow in a multi-selection list: the cursor moves, the selection stays
        } else {
          st.selected.clear();
          if (selectable(entry)) st.selected.add(entry.name);
          st.anchor = i;
        }
        renderActive(true);
        renderSelection();
      }

      function typeahead(ch) {
        const now = Date.now();
        st.typed = now - st.typedAt > 800 ? ch : st.typed + ch;
        st.typedAt = now;
        const prefix = st.typed.toLowerCase();
        const start = st.typed.length === 1 ? st.active + 1 : st.active;
        for (let k = 0; k < st.visible.length; k++) {
          const i = (start + k) % st.visible.length;
          if (st.visible[i].name.toLowerCase().startsWith(prefix)) {
            setActive(i, "select");
            return;
          }
        }
      }

      // --- events
      list.addEventListener("click", (event) => {
        const row = event.target.closest(".fd-row");
        if (!row) return;
        const i = Number(row.dataset.index);
        if (event.shiftKey) setActive(i, "range");
        else if (event.ctrlKey || event.metaKey) setActive(i, "toggle");
        else setActive(i, "select");
        list.focus({ preventScroll: true });
      });
      list.addEventListener("dblclick", (event) => {
        const row = event.target.closest(".fd-row");
        if (!row) return;
        const entry = st.visible[Number(row.dataset.index)];
        if (!entry) return;
        if (entry.type === "dir") openEntry(entry);
        else if (selectable(entry)) {
          st.selected.clear();
          st.selected.add(entry.name);
          confirm();
        }
      });
      list.addEventListener("focus", () => {
        if (st.active < 0 && st.visible.length > 0) {
          st.active = 0;
          renderActive(true);
        }
      });

      list.addEventListener("keydown", (event) => {
        const ctrl = event.ctrlKey || event.metaKey;
        const how = event.shiftKey ? "range" : ctrl && opts.multi ? "move" : "select";
        const page = Math.max(1, Math.floor(list.clientHeight / 34) - 1);
        let handled = true;
        switch (event.key) {
          case "ArrowDown":
            setActive(st.active + 1, how);
            break;
          case "ArrowUp":
            if (event.altKey) goUp();
            else setActive(st.active - 1, how);
            break;
          case "Home":
            setActive(0, how);
            break;
          case "End":
            setActive(st.visible.length - 1, how);
            break;
          case "PageDown":
            setActive(st.active + page, how);
            break;
          case "PageUp":
            setActive(st.active - page, how);
            break;
          case " ":
            if (st.active >= 0) setActive(st.active, opts.multi ? "toggle" : "select");
            break;
          case "Enter": {
            const entry = st.visible[st.active];
            if (ctrl) confirm();
            else if (entry && entry.type === "dir") openEntry(entry);
            else if (entry && selectable(entry)) {
              if (!st.selected.has(entry.name)) {
                if (!opts.multi) st.selected.clear();
                st.selected.add(entry.name);
              }
              confirm();
            } else confirm();
            break;
          }
          case "Backspace":
            goUp();
            break;
          case "a":
          case "A":
            if (ctrl && opts.multi) {
              for (const e of st.visible) if (selectable(e)) st.selected.add(e.name);
              renderSelection();
            } else if (!ctrl && !event.altKey) typeahead(event.key);
            else handled = false;
            break;
          default:
            if (event.key.length === 1 && !ctrl && !event.altKey && event.key !== " ") typeahead(event.key);
            else handled = false;
        }
        if (handled) event.preventDefault();
      });

      function showLocation(show) {
        location.hidden = !show;
        crumbs.hidden = show;
        editButton.setAttribute("aria-pressed", show ? "true" : "false");
        if (show) {
          location.value = st.path;
          location.focus();
          location.select();
        }
      }

      location.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          const value = location.value;
          showLocation(false);
          list.focus();
          if (value.trim()) goTo(value);
        } else if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          showLocation(false);
          list.focus();
        }
      });
      location.addEventListener("blur", () => {
        // leaving the field without Enter puts the breadcrumb back (unless focus went to the edit button)
        setTimeout(() => {
          if (!st.done && document.activeElement !== location && document.activeElement !== editButton) {
            showLocation(false);
          }
        }, 0);
      });

      editButton.addEventListener("click", () => showLocation(location.hidden));
      upButton.addEventListener("click", goUp);
      homeButton.addEventListener("click", () => load(st.home));
      closeButton.addEventListener("click", () => finish(null));
      cancelButton.addEventListener("click", () => finish(null));
      confirmButton.addEventListener("click", confirm);
      hiddenBox.addEventListener("change", () => {
        st.showHidden = hiddenBox.checked;
        const current = st.visible[st.active];
        computeVisible();
        st.active = current ? st.visible.indexOf(current) : -1;
        if (st.active < 0 && st.visible.length > 0) st.active = 0;
        renderList();
      });
      if (filterSelect) {
        filterSelect.addEventListener("change", () => {
          st.filter = Number(filterSelect.value) || 0;
          computeVisible();
          st.active = st.visible.length > 0 ? 0 : -1;
          renderList();
        });
      }

      function focusables() {
        return Array.from(dialog.querySelectorAll("button, input, select, [tabindex='0']")).filter(
          (node) => !node.disabled && !node.hidden && node.offsetParent !== null,
        );
      }

      // a click on its text (not a control) keeps the focus in the dialog, so Escape and the keys below still work
      dialog.tabIndex = -1;
      dialog.addEventListener("keydown", (event) => {
        const ctrl = event.ctrlKey || event.metaKey;
        if (event.key === "Escape") {
          event.preventDefault();
          finish(null);
        } else if (event.key === "Tab") {
          const nodes = focusables();
          if (nodes.length === 0) return;
          const i = nodes.indexOf(document.activeElement);
          const next = event.shiftKey ? (i <= 0 ? nodes.length - 1 : i - 1) : (i < 0 || i === nodes.length - 1 ? 0 : i + 1);
          event.preventDefault();
          nodes[next].focus();
        } else if (ctrl && (event.key === "l" || event.key === "L")) {
          event.preventDefault();
          showLocation(true);
        } else if (ctrl && (event.key === "h" || event.key === "H")) {
          event.preventDefault();
          hiddenBox.checked = !hiddenBox.checked;
          hiddenBox.dispatchEvent(new Event("change"));
        } else if (ctrl && event.key === "Enter" && event.target !== list) {
          event.preventDefault();
          confirm();
        }
      });
      // A click on the backdrop does nothing (no accidental cancel); focus that escapes comes back.
      backdrop.addEventListener("mousedown", (event) => {
        if (event.target === backdrop) event.preventDefault();
      });
      const keepFocus = (event) => {
        if (!dialog.contains(event.target)) list.focus({ preventScroll: true });
      };
      document.addEventListener("focusin", keepFocus);
      dialogEnded.push(() => document.removeEventListener("focusin", keepFocus));

      // --- start
      upButton.disabled = true;
      confirmButton.disabled = true;
      renderCrumbs();
      renderList();
      list.focus();
      (async () => {
        st.home = await homeDir();
        if (st.done) return;
        const start = opts.defaultPath ? expandHome(opts.defaultPath) : "";
        if (start.startsWith("/")) await goTo(start, true);
        else await load(st.home);
      })();
    });
  }

  // ------------------------------------------------------------------------------------------ handler

  // One dialog at a time, as a modal window would be: a second request waits for the first to close. An
  // extension cannot lock the user in dialogs: at most one request waits, and for a moment after the user
  // cancels one, new requests are refused, so that the rest of the dashboard can be reached.
  const MAX_WAITING = 1;
  const PAUSE_AFTER_CANCEL_MS = 1500;
  let queue = Promise.resolve();
  let waiting = 0;
  let pausedUntil = 0;

  dockext.handle("dialog", (message, source) => {
    if (Date.now() < pausedUntil) throw new Error("the user has just dismissed a file dialog");
    if (waiting >= MAX_WAITING) throw new Error("a file dialog is already open");
    const frame = document.getElementById("extension-frame");
    const opts = parseOptions(message && message.options);
    waiting += 1;
    const run = queue.then(async () => {
      waiting -= 1;
      if (frame && !frame.isConnected) return { canceled: true, filePaths: [] }; // the asker has gone
      const result = await openDialog(opts, source || { title: "An extension" }, frame);
      if (result.canceled) pausedUntil = Date.now() + PAUSE_AFTER_CANCEL_MS;
      return result;
    });
    queue = run.catch(() => undefined);
    return run;
  });
})();
