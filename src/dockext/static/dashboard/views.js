/*
 * dockext dashboard: the Docker views (containers, images, volumes) and ddClient.desktopUI.navigate.
 *
 * Built on window.dockext (dashboard.js): panel(prefix, element, show) for the routes below, handle("navigate")
 * for the extension frame's navigation requests, api() for the server. Everything the engine says (names,
 * labels, logs, inspect JSON) is untrusted and only ever put into the page as text (textContent).
 *
 * Routes: #/containers, #/containers/<id>[/logs|inspect|terminal|stats], #/images, #/images/<id>,
 * #/volumes, #/volumes/<name>. Server API: docs/design.md, "Docker views".
 */
(function () {
  "use strict";

  const dx = window.dockext;
  if (!dx) return;

  const POLL_MS = 5000;
  const MAX_LOG_LINES = 5000;
  const STATS_POINTS = 60;
  const CONTAINER_TABS = [
    { id: "logs", label: "Logs" },
    { id: "inspect", label: "Inspect" },
    { id: "terminal", label: "Terminal" },
    { id: "stats", label: "Stats" },
  ];
  const ICONS = {
    containers: ["M21 7.5 12 3 3 7.5v9l9 4.5 9-4.5z", "M3 7.5l9 4.5 9-4.5", "M12 12v9"],
    images: ["M12 3 3 7.5l9 4.5 9-4.5z", "M3 12l9 4.5 9-4.5", "M3 16.5 12 21l9-4.5"],
    volumes: [
      "M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3z",
      "M4 6v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6",
      "M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3",
    ],
    search: ["M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14z", "M20 20l-4-4"],
    refresh: ["M20 11a8 8 0 1 0-2.3 5.7", "M20 4v7h-7"],
    copy: ["M9 9h11v11H9z", "M5 15V6a2 2 0 0 1 2-2h9"],
    check: ["M20 6 9 17l-5-5"],
    chevron: ["M9 6l6 6-6 6"],
    down: ["M12 5v14", "M6 13l6 6 6-6"],
    trash: ["M4 7h16", "M10 11v6", "M14 11v6", "M6 7l1 13h10l1-13", "M9 7V4h6v3"],
    terminal: ["M4 5h16v14H4z", "M8 10l3 2-3 2", "M13 15h3"],
  };

  // ------------------------------------------------------------------------------------------ helpers

  const el = dx.el; // shared with dashboard.js: text is set as text, never parsed as HTML

  function icon(name, size) {
    return dx.svg(ICONS[name], size || 16, 1.8);
  }

  function button(className, label, onClick) {
    const b = el("button", className, label);
    b.type = "button";
    if (onClick) b.addEventListener("click", onClick);
    return b;
  }

  function iconButton(name, label, onClick) {
    const b = button("icon-button", null, onClick);
    b.setAttribute("aria-label", label);
    b.title = label;
    b.appendChild(icon(name, 16));
    return b;
  }

  function copyButton(getText, label) {
    const b = iconButton("copy", label || "Copy", async () => {
      try {
        await navigator.clipboard.writeText(getText());
        b.replaceChildren(icon("check", 16));
        b.classList.add("copied");
        setTimeout(() => {
          b.replaceChildren(icon("copy", 16));
          b.classList.remove("copied");
        }, 1500);
      } catch (_) {
        dx.toast("warning", "Copying to the clipboard is not allowed here.");
      }
    });
    b.classList.add("copy-button");
    return b;
  }

  function errorText(error) {
    return String(error && error.message ? error.message : error);
  }

  function shortId(id) {
    return String(id || "").replace(/^sha256:/, "").slice(0, 12);
  }

  function containerName(c) {
    const names = Array.isArray(c.Names) ? c.Names : [];
    const name = names.length ? names[0] : c.Name || c.Id || "";
    return String(name).replace(/^\//, "");
  }

  function isExtensionContainer(c) {
    const labels = (c && (c.Labels || (c.Config && c.Config.Labels))) || {};
    return labels["com.docker.desktop.extension"] === "true";
  }

  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function relativeTime(ms) {
    if (!Number.isFinite(ms) || ms <= 0) return "";
    const seconds = Math.round((ms - Date.now()) / 1000);
    const units = [
      ["year", 31536000],
      ["month", 2592000],
      ["week", 604800],
      ["day", 86400],
      ["hour", 3600],
      ["minute", 60],
    ];
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
    }
    return Math.abs(seconds) < 10 ? "just now" : relative.format(seconds, "second");
  }

  function timeCell(ms) {
    const span = el("span", "nowrap", relativeTime(ms));
    if (Number.isFinite(ms) && ms > 0) span.title = new Date(ms).toLocaleString();
    return span;
  }

  function parseTime(value) {
    if (typeof value === "number") return value * 1000;
    const ms = Date.parse(String(value || ""));
    return Number.isFinite(ms) && ms > 0 ? ms : NaN;
  }

  function formatSize(bytes, binary) {
    const n = Number(bytes);
    if (!Number.isFinite(n) || n < 0) return "—";
    const base = binary ? 1024 : 1000;
    const units = binary ? ["B", "KiB", "MiB", "GiB", "TiB"] : ["B", "kB", "MB", "GB", "TB"];
    let value = n;
    let unit = 0;
    while (value >= base && unit < units.length - 1) {
      value /= base;
      unit += 1;
    }
    const digits = unit === 0 ? 0 : value < 10 ? 2 : value < 100 ? 1 : 0;
    return `${value.toFixed(digits)} ${units[unit]}`;
  }

  function containerPorts(ports) {
    const seen = new Set();
    const out = [];
    for (const p of Array.isArray(ports) ? ports : []) {
      const text = p.PublicPort ? `${p.PublicPort}:${p.PrivatePort}` : `${p.PrivatePort}`;
      const key = `${text}/${p.Type}`;
      if (seen.has(key)) continue; // the same mapping on IPv4 and IPv6
      seen.add(key);
      out.push(p.Type && p.Type !== "tcp" ? key : text);
    }
    return out;
  }

  function inspectPorts(info) {
    const out = [];
    const ports = (info.NetworkSettings && info.NetworkSettings.Ports) || {};
    for (const [spec, bindings] of Object.entries(ports)) {
      const [port, proto] = spec.split("/");
      const seen = new Set();
      for (const b of Array.isArray(bindings) ? bindings : []) {
        if (!b || !b.HostPort || seen.has(b.HostPort)) continue;
        seen.add(b.HostPort);
        out.push(proto && proto !== "tcp" ? `${b.HostPort}:${port}/${proto}` : `${b.HostPort}:${port}`);
      }
    }
    return out;
  }

  const STATE_LABELS = {
    running: "Running",
    exited: "Exited",
    paused: "Paused",
    restarting: "Restarting",
    created: "Created",
    removing: "Removing",
    dead: "Dead",
  };

  function statePill(state, exitCode) {
    const s = String(state || "unknown").toLowerCase();
    let kind = "pill-neutral";
    if (s === "running") kind = "pill-ok";
    else if (s === "paused" || s === "restarting") kind = "pill-partial";
    else if (s === "dead" || (s === "exited" && exitCode)) kind = "pill-stopped";
    let text = STATE_LABELS[s] || s;
    if (s === "exited" && Number.isInteger(exitCode)) text += ` (${exitCode})`;
    return el("span", `pill ${kind}`, text);
  }

  function exitCodeFromStatus(status) {
    const m = /^Exited \((-?\d+)\)/.exec(String(status || ""));
    return m ? Number(m[1]) : null;
  }

  function imageTags(image) {
    return (Array.isArray(image.RepoTags) ? image.RepoTags : []).filter((t) => t && t !== "<none>:<none>");
  }

  /** "registry:5000/ns/name:tag" → ["registry:5000/ns/name", "tag"] */
  function splitTag(ref) {
    const text = String(ref);
    const slash = text.lastIndexOf("/");
    const colon = text.lastIndexOf(":");
    return colon > slash ? [text.slice(0, colon), text.slice(colon + 1)] : [text, ""];
  }

  /** [repository, tag] to show for an image; "<none>" for what it does not have. */
  function imageName(image) {
    const tags = imageTags(image);
    if (tags.length) return splitTag(tags[0]);
    const digests = (Array.isArray(image.RepoDigests) ? image.RepoDigests : []).filter(
      (d) => d && !String(d).startsWith("<none>"),
    );
    if (digests.length) return [String(digests[0]).split("@")[0], "<none>"];
    return ["<none>", "<none>"];
  }

  function hashPart(value) {
    return encodeURIComponent(String(value));
  }

  function decodePart(value) {
    try {
      return decodeURIComponent(value);
    } catch (_) {
      return null;
    }
  }

  function focusHeadingIfLost(root) {
    const active = document.activeElement;
    if (!active || active === document.body || !active.isConnected || active.closest("[hidden]")) {
      const h1 = root.querySelector("h1");
      if (h1) h1.focus({ preventScroll: true });
    }
  }

  /** Cleanup callbacks for one view's life: streams, timers, terminals. */
  class Scope {
    constructor() {
      this.alive = true;
      this.cleanups = [];
    }
    add(fn) {
      if (this.alive) this.cleanups.push(fn);
      else fn();
    }
    every(ms, fn) {
      const timer = setInterval(() => {
        if (!document.hidden) fn();
      }, ms);
      this.add(() => clearInterval(timer));
    }
    dispose() {
      if (!this.alive) return;
      this.alive = false;
      for (const fn of this.cleanups.splice(0).reverse()) {
        try {
          fn();
        } catch (error) {
          console.warn("dockext: cleanup failed:", error);
        }
      }
    }
  }

  // ------------------------------------------------------------------------------ shared UI parts

  function viewHeader(title, summary) {
    const header = el("header", "view-header");
    const h1 = el("h1", null, title);
    h1.tabIndex = -1;
    header.appendChild(h1);
    const sum = el("p", "view-summary", summary || "");
    header.appendChild(sum);
    return { header, h1, summary: sum };
  }

  function searchBox(label, onInput) {
    const wrap = el("div", "search");
    wrap.appendChild(icon("search", 16));
    const input = el("input", "search-input");
    input.type = "search";
    input.placeholder = "Search";
    input.setAttribute("aria-label", label);
    input.autocomplete = "off";
    input.spellcheck = false;
    input.addEventListener("input", () => onInput(input.value.trim().toLowerCase()));
    wrap.appendChild(input);
    return { wrap, input };
  }

  function switchControl(label, checked, onChange) {
    const wrap = el("label", "switch");
    const input = el("input");
    input.type = "checkbox";
    input.setAttribute("role", "switch");
    input.checked = Boolean(checked);
    input.addEventListener("change", () => onChange(input.checked, input));
    const track = el("span", "switch-track");
    track.setAttribute("aria-hidden", "true");
    wrap.append(input, track, el("span", "switch-label", label));
    return { wrap, input };
  }

  function breadcrumbs(parentLabel, parentHash, current) {
    const nav = el("nav", "breadcrumbs");
    nav.setAttribute("aria-label", "Breadcrumb");
    const back = button("crumb", parentLabel, () => dx.navigate(parentHash));
    nav.append(back, icon("chevron", 14), el("span", "crumb-current", current));
    return nav;
  }

  function emptyState(title, text, iconName) {
    const box = el("div", "empty-state view-empty");
    if (iconName) {
      const art = el("span", "empty-icon");
      art.appendChild(icon(iconName, 28));
      box.appendChild(art);
    }
    box.appendChild(el("h2", null, title));
    if (text) box.appendChild(el("p", "muted", text));
    return box;
  }

  function loadingState(text) {
    const box = el("div", "state-message");
    const spin = el("span", "spinner");
    spin.setAttribute("aria-hidden", "true");
    box.append(spin, document.createTextNode(text));
    return box;
  }

  function errorState(title, error, retry) {
    const box = emptyState(title, errorText(error));
    box.classList.add("view-error");
    box.setAttribute("role", "alert");
    if (retry) box.appendChild(button("button", "Try again", retry));
    return box;
  }

  function table(columns) {
    const card = el("div", "table-card");
    const t = el("table", "ext-table data-table");
    const thead = el("thead");
    const tr = el("tr");
    for (const col of columns) {
      const th = el("th", col.className || "", col.label);
      th.scope = "col";
      tr.appendChild(th);
    }
    thead.appendChild(tr);
    const tbody = el("tbody");
    t.append(thead, tbody);
    card.appendChild(t);
    return { card, tbody };
  }

  function cell(content, className) {
    const td = el("td", className || "");
    if (content instanceof Node) td.appendChild(content);
    else if (content === null || content === undefined || content === "") td.appendChild(el("span", "none", "—"));
    else td.textContent = String(content);
    return td;
  }

  /** Re-render rows without losing the focused control (matched by data-key). */
  function replaceRows(tbody, rows) {
    const active = document.activeElement;
    const row = active && tbody.contains(active) ? active.closest("tr") : null;
    const key = row ? row.dataset.key : null;
    const role = active && active.dataset ? active.dataset.role : null;
    tbody.replaceChildren(...rows);
    if (key) {
      const again = Array.from(tbody.children).find((tr) => tr.dataset.key === key);
      const target = again && (again.querySelector(`[data-role="${role}"]`) || again.querySelector("button"));
      if (target) target.focus({ preventScroll: true });
    }
  }

  function linkButton(text, onClick, role, extraClass) {
    const b = button(`link-button${extraClass ? ` ${extraClass}` : ""}`, text, onClick);
    if (role) b.dataset.role = role;
    return b;
  }

  /** role=tablist with roving focus and arrow keys; select(id) is called on activation. */
  function tabList(label, tabs, select) {
    const list = el("div", "view-tabs");
    list.setAttribute("role", "tablist");
    list.setAttribute("aria-label", label);
    const buttons = tabs.map((tab) => {
      const b = button("view-tab", tab.label, () => select(tab.id));
      b.setAttribute("role", "tab");
      b.dataset.tab = tab.id;
      b.id = `view-tab-${tab.id}`;
      b.setAttribute("aria-selected", "false");
      b.tabIndex = -1;
      if (tab.count !== undefined) b.appendChild(el("span", "tab-count", tab.count));
      return b;
    });
    list.append(...buttons);
    list.addEventListener("keydown", (event) => {
      const index = buttons.indexOf(document.activeElement);
      if (index < 0) return;
      let next = null;
      if (event.key === "ArrowRight" || event.key === "ArrowDown") next = buttons[(index + 1) % buttons.length];
      else if (event.key === "ArrowLeft" || event.key === "ArrowUp")
        next = buttons[(index - 1 + buttons.length) % buttons.length];
      else if (event.key === "Home") next = buttons[0];
      else if (event.key === "End") next = buttons[buttons.length - 1];
      if (!next) return;
      event.preventDefault();
      next.focus();
      next.click();
    });
    return {
      list,
      mark(id) {
        for (const b of buttons) {
          const on = b.dataset.tab === id;
          b.setAttribute("aria-selected", on ? "true" : "false");
          b.tabIndex = on ? 0 : -1;
        }
      },
    };
  }

  // ---------------------------------------------------------------------------------- JSON viewer

  function jsonView(value) {
    const pre = el("pre", "json-view");
    pre.tabIndex = 0;
    pre.setAttribute("aria-label", "JSON");
    const out = document.createDocumentFragment();
    const put = (text, cls) => out.appendChild(cls ? el("span", cls, text) : document.createTextNode(text));
    const walk = (v, depth) => {
      const pad = "  ".repeat(depth);
      if (Array.isArray(v)) {
        if (v.length === 0) return put("[]", "j-punct");
        put("[\n", "j-punct");
        v.forEach((item, i) => {
          put(pad + "  ");
          walk(item, depth + 1);
          put(i < v.length - 1 ? ",\n" : "\n", "j-punct");
        });
        return put(`${pad}]`, "j-punct");
      }
      if (v && typeof v === "object") {
        const keys = Object.keys(v);
        if (keys.length === 0) return put("{}", "j-punct");
        put("{\n", "j-punct");
        keys.forEach((k, i) => {
          put(pad + "  ");
          put(JSON.stringify(k), "j-key");
          put(": ", "j-punct");
          walk(v[k], depth + 1);
          put(i < keys.length - 1 ? ",\n" : "\n", "j-punct");
        });
        return put(`${pad}}`, "j-punct");
      }
      if (typeof v === "string") return put(JSON.stringify(v), "j-string");
      if (typeof v === "number") return put(String(v), "j-number");
      if (typeof v === "boolean") return put(String(v), "j-bool");
      return put("null", "j-null");
    };
    walk(value, 0);
    pre.appendChild(out);
    return pre;
  }

  function jsonCard(value, label, extraButtons) {
    const card = el("div", "code-card");
    const bar = el("div", "code-toolbar");
    bar.appendChild(el("span", "code-title", label || "JSON"));
    const buttons = el("span", "code-buttons");
    buttons.append(...(extraButtons || []), copyButton(() => JSON.stringify(value, null, 2), "Copy JSON"));
    bar.appendChild(buttons);
    card.append(bar, jsonView(value));
    return card;
  }

  function keyValueList(entries) {
    const dl = el("dl", "kv-list");
    for (const [key, value] of entries) {
      if (value === undefined || value === null || value === "") continue;
      dl.appendChild(el("dt", null, key));
      const dd = el("dd");
      if (value instanceof Node) dd.appendChild(value);
      else dd.textContent = String(value);
      dl.appendChild(dd);
    }
    return dl;
  }

  function labelsList(labels) {
    const entries = Object.entries(labels || {}).sort(([a], [b]) => a.localeCompare(b));
    if (entries.length === 0) return null;
    const list = el("div", "label-list");
    for (const [k, v] of entries) {
      const row = el("div", "label-row");
      row.append(el("span", "label-key", k), el("span", "label-value", v));
      list.appendChild(row);
    }
    return list;
  }

  function section(title, content, extra) {
    const box = el("section", "detail-section");
    const head = el("div", "section-head");
    head.appendChild(el("h2", null, title));
    if (extra) head.appendChild(extra);
    box.appendChild(head);
    box.appendChild(content);
    return box;
  }

  function containerLinks(list) {
    if (!Array.isArray(list) || list.length === 0) return el("p", "muted", "No container uses it.");
    const ul = el("ul", "link-list");
    for (const c of list) {
      const li = el("li");
      const dot = el("span", `state-dot state-${String(c.State || "").toLowerCase()}`);
      dot.setAttribute("aria-hidden", "true");
      li.append(dot, linkButton(containerName(c), () => dx.navigate(`#/containers/${hashPart(c.Id)}`)));
      li.appendChild(el("span", "muted small", c.Status || c.State || ""));
      ul.appendChild(li);
    }
    return ul;
  }

  // --------------------------------------------------------------------------------------- panels

  const panelsRoot = document.getElementById("panels");
  const navRoot = document.getElementById("docker-nav");

  function makePanel(name, title) {
    const section = el("section", `view view-${name}`);
    section.id = `view-${name}`;
    section.hidden = true;
    section.setAttribute("aria-label", title);
    panelsRoot.appendChild(section);
    const button = el("button", "nav-item");
    button.type = "button";
    button.dataset.panel = `#/${name}`;
    button.title = title; // the name to see when the sidebar shows icons only
    const svg = icon(name, 20);
    svg.classList.add("nav-icon");
    button.append(svg, el("span", "nav-label", title));
    button.addEventListener("click", () => dx.navigate(`#/${name}`));
    navRoot.appendChild(button);
    return section;
  }

  /** A panel whose content is one "page" at a time; leaving the panel disposes of the page. */
  class Panel {
    constructor(name, title) {
      this.name = name;
      this.title = title;
      this.root = makePanel(name, title);
      this.page = null; // {key, scope, ...}
      new MutationObserver(() => {
        if (this.root.hidden) this.leave();
      }).observe(this.root, { attributes: true, attributeFilter: ["hidden"] });
    }
    register() {
      dx.panel(`#/${this.name}`, this.root, (hash) => this.route(hash));
      return this;
    }
    /** #/<name> shows the list, #/<name>/<id> one object (images, volumes; containers add tabs). */
    route(hash) {
      const m = new RegExp(`^#/${this.name}/([^/?]+)/?$`).exec(hash);
      if (!m) {
        if (!this.page || this.page.key !== "list") this.open("list", (page, scope) => this.list(page, scope));
        else this.page.refresh();
        document.title = `${this.title} · dockext`;
        return;
      }
      const id = decodePart(m[1]);
      if (id === null) return dx.navigate(`#/${this.name}`);
      if (!this.page || this.page.key !== `detail:${id}`)
        this.open(`detail:${id}`, (page, scope) => this.detail(page, scope, id));
    }
    leave() {
      if (this.page) this.page.scope.dispose();
      this.page = null;
    }
    open(key, build) {
      this.leave();
      const scope = new Scope();
      const page = { key, scope };
      this.page = page;
      this.root.replaceChildren();
      build(page, scope);
      focusHeadingIfLost(this.root);
      return page;
    }
  }

  // ----------------------------------------------------------------------------------- containers

  class ContainersPanel extends Panel {
    constructor() {
      super("containers", "Containers");
      this.onlyRunning = false;
      this.query = "";
    }

    route(hash) {
      const m = /^#\/containers\/([^/?]+)(?:\/([a-z]+))?\/?$/.exec(hash);
      if (!m) {
        if (!this.page || this.page.key !== "list") this.open("list", (page, scope) => this.list(page, scope));
        else this.page.refresh();
        document.title = "Containers · dockext";
        return;
      }
      const id = decodePart(m[1]);
      const tab = CONTAINER_TABS.some((t) => t.id === m[2]) ? m[2] : "logs";
      if (id === null) return dx.navigate("#/containers");
      if (this.page && this.page.key === `detail:${id}`) this.page.select(tab);
      else this.open(`detail:${id}`, (page, scope) => this.detail(page, scope, id, tab));
    }

    // -- the list ------------------------------------------------------------------------------------
    list(page, scope) {
      const inner = el("div", "view-inner");
      const head = viewHeader("Containers");
      const toolbar = el("div", "toolbar");
      const search = searchBox("Search containers", (q) => {
        this.query = q;
        render();
      });
      search.input.value = this.query;
      const running = switchControl("Only show running", this.onlyRunning, (on) => {
        this.onlyRunning = on;
        page.refresh();
      });
      const extensions = switchControl("Show extension containers", false, async (on, input) => {
        input.disabled = true;
        try {
          await dx.api("PUT", "/api/settings", { show_extension_containers: on });
          await page.refresh();
        } catch (error) {
          input.checked = !on;
          dx.toast("error", `Could not change the setting: ${errorText(error)}`);
        } finally {
          input.disabled = false;
        }
      });
      extensions.wrap.classList.add("setting-extensions");
      extensions.wrap.title = "Containers that extension backends run (label com.docker.desktop.extension=true)";
      const spacer = el("span", "toolbar-spacer");
      const refresh = iconButton("refresh", "Refresh", () => page.refresh());
      toolbar.append(search.wrap, running.wrap, extensions.wrap, spacer, refresh);

      const body = el("div", "view-body");
      const { card, tbody } = table([
        { label: "Name" },
        { label: "Image" },
        { label: "Status" },
        { label: "Ports" },
        { label: "Created", className: "nowrap" },
      ]);
      card.hidden = true;
      const loading = loadingState("Loading containers…");
      body.append(loading, card);
      inner.append(head.header, toolbar, body);
      this.root.appendChild(inner);

      let data = null;
      let empty = null;
      let failure = null;

      const render = () => {
        if (!data) return;
        const list = data.containers.filter((c) => {
          if (!this.query) return true;
          const hay = `${containerName(c)} ${c.Image || ""} ${c.Id || ""}`.toLowerCase();
          return hay.includes(this.query);
        });
        const runningCount = data.containers.filter((c) => c.State === "running").length;
        let summary = this.onlyRunning
          ? `${runningCount} running`
          : `${runningCount} running · ${data.containers.length} total`;
        if (data.hidden > 0 && !data.show_extension_containers)
          summary += ` · ${data.hidden} extension container${data.hidden === 1 ? "" : "s"} hidden`;
        head.summary.textContent = summary;
        extensions.input.checked = Boolean(data.show_extension_containers);
        if (empty) empty.remove();
        empty = null;
        card.hidden = list.length === 0;
        if (list.length === 0) {
          empty = this.query
            ? emptyState("No matching containers", `Nothing matches “${this.query}”.`, "search")
            : emptyState(
                this.onlyRunning ? "No running containers" : "No containers",
                data.hidden > 0 && !data.show_extension_containers
                  ? `${data.hidden} extension container${data.hidden === 1 ? " is" : "s are"} hidden: ` +
                    "turn on “Show extension containers” to see them."
                  : "Containers you run on this engine show up here.",
                "containers",
              );
          body.appendChild(empty);
        }
        replaceRows(tbody, list.map((c) => this.row(c)));
      };

      page.refresh = async () => {
        const mine = (page.seq = (page.seq || 0) + 1); // only the latest answer is shown
        try {
          const answer = await dx.api("GET", `/api/docker/containers?all=${this.onlyRunning ? 0 : 1}`);
          if (!scope.alive || mine !== page.seq) return;
          data = {
            containers: Array.isArray(answer.containers) ? answer.containers : [],
            hidden: Number(answer.hidden) || 0,
            show_extension_containers: Boolean(answer.show_extension_containers),
          };
          loading.remove();
          if (failure) failure.remove();
          failure = null;
          render();
        } catch (error) {
          if (!scope.alive || mine !== page.seq) return;
          loading.remove();
          if (!data) {
            if (failure) failure.remove();
            failure = errorState("Cannot list containers", error, () => page.refresh());
            body.appendChild(failure);
          }
        }
      };
      page.refresh();
      scope.every(POLL_MS, () => page.refresh());
    }

    row(c) {
      const tr = el("tr");
      tr.dataset.key = c.Id;
      const name = containerName(c);
      const state = String(c.State || "").toLowerCase();
      const who = el("div", "name-cell");
      const dot = el("span", `state-dot state-${state}`);
      dot.setAttribute("aria-hidden", "true");
      const text = el("div", "name-text");
      const line = el("div", "name-line");
      line.appendChild(linkButton(name, () => dx.navigate(`#/containers/${hashPart(c.Id)}`), "open"));
      if (isExtensionContainer(c)) line.appendChild(el("span", "tag-chip", "extension"));
      text.append(line, el("div", "sub mono", shortId(c.Id)));
      who.append(dot, text);

      let image = null;
      if (c.Image) {
        const label = String(c.Image).startsWith("sha256:") ? shortId(c.Image) : c.Image;
        image = c.ImageID
          ? linkButton(label, () => dx.navigate(`#/images/${hashPart(c.ImageID)}`), "image", "subtle")
          : el("span", null, label);
        image.title = String(c.Image);
      }
      const status = el("div", "status-cell");
      const pill = statePill(state, exitCodeFromStatus(c.Status));
      status.appendChild(pill);
      // "Up 2 hours", "Exited (0) 3 days ago"; not "Created" again under "Created"
      if (c.Status && c.Status !== pill.textContent) status.appendChild(el("div", "sub", c.Status));
      const ports = containerPorts(c.Ports);
      let portNode = null;
      if (ports.length) {
        portNode = el("div", "chips");
        for (const p of ports.slice(0, 3)) portNode.appendChild(el("span", "chip", p));
        if (ports.length > 3) portNode.appendChild(el("span", "muted small", `+${ports.length - 3}`));
      }
      tr.append(
        cell(who),
        cell(image, "image-cell"),
        cell(status),
        cell(portNode),
        cell(timeCell(parseTime(c.Created))),
      );
      return tr;
    }

    // -- one container -------------------------------------------------------------------------------
    detail(page, scope, id, firstTab) {
      const inner = el("div", "view-inner detail-inner");
      const crumbs = breadcrumbs("Containers", "#/containers", id.length > 24 ? shortId(id) : id);
      const header = el("header", "detail-header");
      const titleRow = el("div", "detail-title");
      const dot = el("span", "state-dot");
      dot.setAttribute("aria-hidden", "true");
      const h1 = el("h1", null, id.length > 24 ? shortId(id) : id);
      h1.tabIndex = -1;
      const pillSlot = el("span", "pill-slot");
      titleRow.append(dot, h1, pillSlot);
      const meta = el("div", "detail-meta");
      header.append(titleRow, meta);
      const tabs = tabList(
        "Container",
        CONTAINER_TABS,
        (tab) => dx.navigate(`#/containers/${hashPart(id)}/${tab}`),
      );
      const panel = el("div", "tab-panel");
      panel.setAttribute("role", "tabpanel");
      inner.append(crumbs, header, tabs.list, panel);
      this.root.appendChild(inner);

      page.info = null;
      page.tab = null;
      page.tabScope = null;
      page.missing = false;

      const renderHeader = (info) => {
        const name = String(info.Name || id).replace(/^\//, "");
        h1.textContent = name;
        crumbs.querySelector(".crumb-current").textContent = name;
        document.title = `${name} · Containers · dockext`;
        const state = info.State || {};
        const status = String(state.Status || "").toLowerCase();
        dot.className = `state-dot state-${status}`;
        pillSlot.replaceChildren(statePill(status, status === "exited" ? state.ExitCode : null));
        const parts = [];
        const image = (info.Config && info.Config.Image) || info.Image;
        if (image) {
          const label = String(image).startsWith("sha256:") ? shortId(image) : image;
          const link = linkButton(label, () => dx.navigate(`#/images/${hashPart(info.Image)}`), "image", "subtle");
          link.title = "View image";
          parts.push(metaItem("Image", link));
        }
        const idBox = el("span", "id-box");
        idBox.append(el("code", null, shortId(info.Id)), copyButton(() => info.Id, "Copy container ID"));
        parts.push(metaItem("ID", idBox));
        const ports = inspectPorts(info);
        if (ports.length) parts.push(metaItem("Ports", ports.join(", ")));
        const started = parseTime(state.StartedAt);
        const finished = parseTime(state.FinishedAt);
        if (status === "running" && started) parts.push(metaItem("Started", timeCell(started)));
        else if (status === "exited" && finished) parts.push(metaItem("Finished", timeCell(finished)));
        else parts.push(metaItem("Created", timeCell(parseTime(info.Created))));
        if (isExtensionContainer(info)) parts.push(el("span", "tag-chip", "extension"));
        meta.replaceChildren(...parts);
      };

      const loadInfo = async () => {
        try {
          const info = await dx.api("GET", `/api/docker/containers/${hashPart(id)}`);
          if (!scope.alive) return null;
          const wasRunning = page.info && page.info.State && page.info.State.Running;
          page.info = info;
          renderHeader(info);
          if (page.tab && wasRunning !== undefined && wasRunning !== Boolean(info.State && info.State.Running)) {
            page.stateChanged();
          }
          return info;
        } catch (error) {
          if (!scope.alive) return null;
          if (!page.info) {
            page.missing = true;
            inner.replaceChildren(crumbs, errorState("Cannot show this container", error, () => page.reload()));
            focusHeadingIfLost(this.root);
          }
          return null;
        }
      };

      page.reload = () => this.open(`detail:${id}`, (p, s) => this.detail(p, s, id, page.tab || firstTab));

      const showTab = (tab) => {
        if (page.tab === tab) return;
        page.tab = tab;
        if (page.tabScope) page.tabScope.dispose();
        const tabScope = new Scope();
        page.tabScope = tabScope;
        scope.add(() => tabScope.dispose());
        panel.replaceChildren();
        panel.setAttribute("aria-labelledby", `view-tab-${tab}`);
        panel.className = `tab-panel tab-${tab}`;
        const builders = { logs: logsTab, inspect: inspectTab, terminal: terminalTab, stats: statsTab };
        builders[tab](panel, tabScope, id, page);
      };

      page.select = (tab) => {
        if (page.missing) return;
        tabs.mark(tab);
        if (page.info) showTab(tab);
        else page.pendingTab = tab;
      };

      // When the container starts or stops, the tabs that depend on it start again (logs: when it starts).
      page.stateChanged = () => {
        const running = Boolean(page.info && page.info.State && page.info.State.Running);
        if (page.tab === "terminal" || page.tab === "stats" || (page.tab === "logs" && running)) {
          const tab = page.tab;
          page.tab = null;
          showTab(tab);
        }
      };

      loadInfo().then((info) => {
        if (info && scope.alive) showTab(page.pendingTab || firstTab);
      });
      tabs.mark(firstTab);
      panel.appendChild(loadingState("Loading container…"));
      scope.every(POLL_MS, loadInfo);
    }
  }

  function metaItem(label, value) {
    const item = el("span", "meta-item");
    item.appendChild(el("span", "meta-label", label));
    if (value instanceof Node) item.appendChild(value);
    else item.appendChild(el("span", "meta-value", value));
    return item;
  }

  // -- logs ------------------------------------------------------------------------------------------

  function formatTimestamp(ts) {
    const ms = Date.parse(ts);
    if (!Number.isFinite(ms)) return String(ts || "");
    const d = new Date(ms);
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
    );
  }

  function logsTab(panel, scope, id) {
    const prefs = logsTab.prefs || (logsTab.prefs = { timestamps: false, wrap: true });
    const toolbar = el("div", "toolbar log-toolbar");
    let query = "";
    const search = searchBox("Filter logs", (q) => {
      query = q;
      for (const line of view.children) applyFilter(line);
      updateEmpty();
    });
    search.input.placeholder = "Filter";
    const stamps = switchControl("Timestamps", prefs.timestamps, (on) => {
      prefs.timestamps = on;
      view.classList.toggle("show-timestamps", on);
    });
    const wrap = switchControl("Wrap lines", prefs.wrap, (on) => {
      prefs.wrap = on;
      view.classList.toggle("nowrap-lines", !on);
    });
    const status = el("span", "live-status");
    const statusText = el("span", null, "Connecting…");
    const statusDot = el("span", "live-dot");
    statusDot.setAttribute("aria-hidden", "true");
    status.append(statusDot, statusText);
    const clear = button("button button-secondary", "Clear", () => {
      view.replaceChildren();
      lastLine = null;
      updateEmpty();
    });
    toolbar.append(search.wrap, stamps.wrap, wrap.wrap, el("span", "toolbar-spacer"), status, clear);

    const frame = el("div", "log-frame");
    const view = el("div", "log-view");
    view.setAttribute("role", "log");
    view.setAttribute("aria-live", "off"); // a busy log would drown a screen reader
    view.setAttribute("aria-label", "Container logs");
    view.tabIndex = 0;
    view.classList.toggle("show-timestamps", prefs.timestamps);
    view.classList.toggle("nowrap-lines", !prefs.wrap);
    const placeholder = el("div", "log-empty", "No log output yet.");
    const jump = button("jump-latest", null, () => {
      view.scrollTop = view.scrollHeight;
      jump.hidden = true;
    });
    jump.append(icon("down", 14), document.createTextNode("Latest"));
    jump.hidden = true;
    frame.append(view, placeholder, jump);
    panel.append(toolbar, frame);

    let lastLine = null;
    let atBottom = true;
    view.addEventListener("scroll", () => {
      atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 24;
      if (atBottom) jump.hidden = true;
    });

    function applyFilter(line) {
      line.hidden = Boolean(query) && !line.dataset.text.includes(query);
    }

    function updateEmpty() {
      const any = view.firstElementChild !== null;
      placeholder.hidden = any && (!query || Array.from(view.children).some((l) => !l.hidden));
      placeholder.textContent = any ? `No line matches “${query}”.` : "No log output yet.";
    }

    function append(lines) {
      const frag = document.createDocumentFragment();
      for (const item of lines) {
        const text = String(item.x ?? "");
        if (lastLine && lastLine.dataset.partial === "1" && lastLine.dataset.stream === item.s) {
          lastLine.querySelector(".log-text").textContent += text;
          lastLine.dataset.text += text.toLowerCase();
          lastLine.dataset.partial = item.p ? "1" : "0";
          applyFilter(lastLine);
          continue;
        }
        const line = el("div", `log-line${item.s === "stderr" ? " log-stderr" : ""}`);
        line.dataset.stream = item.s;
        line.dataset.partial = item.p ? "1" : "0";
        line.dataset.text = text.toLowerCase();
        const ts = el("span", "log-ts", item.t ? formatTimestamp(item.t) : "");
        if (item.t) ts.title = item.t;
        line.append(ts, el("span", "log-text", text));
        applyFilter(line);
        frag.appendChild(line);
        lastLine = line;
      }
      const stick = atBottom;
      view.appendChild(frag);
      let extra = view.childElementCount - MAX_LOG_LINES;
      while (extra-- > 0) view.firstElementChild.remove();
      updateEmpty();
      if (stick) view.scrollTop = view.scrollHeight;
      else jump.hidden = false;
    }

    function setStatus(kind, text) {
      status.dataset.state = kind;
      statusText.textContent = text;
    }

    const source = new EventSource(dx.withKey(`/api/docker/containers/${hashPart(id)}/logs?tail=1000`));
    scope.add(() => source.close());
    source.addEventListener("open", () => setStatus("live", "Live"));
    source.addEventListener("logs", (event) => {
      try {
        const data = JSON.parse(event.data);
        if (Array.isArray(data.lines)) append(data.lines);
      } catch (_) {
        /* a malformed event is skipped */
      }
    });
    source.addEventListener("end", () => {
      source.close();
      setStatus("ended", "Stopped");
    });
    source.addEventListener("failed", (event) => {
      source.close();
      let message = "The log stream failed";
      try {
        message = JSON.parse(event.data).message || message;
      } catch (_) {
        /* keep the default */
      }
      setStatus("error", message);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) setStatus("error", "Disconnected");
      else setStatus("connecting", "Reconnecting…");
    });
    updateEmpty();
  }

  // -- inspect ---------------------------------------------------------------------------------------

  function inspectTab(panel, scope, id, page) {
    const render = (info) => {
      const refresh = iconButton("refresh", "Refresh", async () => {
        try {
          const fresh = await dx.api("GET", `/api/docker/containers/${hashPart(id)}`);
          if (scope.alive) render(fresh);
        } catch (error) {
          dx.toast("error", errorText(error));
        }
      });
      refresh.classList.add("copy-button");
      const card = jsonCard(info, "docker inspect", [refresh]);
      card.classList.add("fill");
      panel.replaceChildren(card);
    };
    render(page.info);
  }

  // -- stats -----------------------------------------------------------------------------------------

  function statsTab(panel, scope, id, page) {
    const running = page.info && page.info.State && page.info.State.Running;
    if (!running) {
      panel.appendChild(
        emptyState("This container is not running", "Stats are shown while the container runs.", "containers"),
      );
      return;
    }
    const grid = el("div", "stats-grid");
    const card = (title, chart) => {
      const box = el("div", `stat-card${chart ? " with-chart" : ""}`);
      const label = el("div", "stat-label", title);
      const value = el("div", "stat-value", "—");
      const sub = el("div", "stat-sub", "");
      box.append(label, value, sub);
      let canvas = null;
      if (chart) {
        canvas = el("canvas", `stat-chart chart-${chart}`);
        canvas.setAttribute("aria-hidden", "true");
        box.appendChild(canvas);
      }
      grid.appendChild(box);
      return { box, value, sub, canvas };
    };
    const cpu = card("CPU usage", "cpu");
    const mem = card("Memory usage", "mem");
    const net = card("Network I/O");
    const disk = card("Disk read / write");
    const pids = card("Processes");
    cpu.box.dataset.stat = "cpu";
    mem.box.dataset.stat = "memory";
    net.box.dataset.stat = "network";
    disk.box.dataset.stat = "block";
    pids.box.dataset.stat = "pids";
    const note = el("p", "muted small stats-note", "Waiting for the first sample…");
    panel.append(grid, note);

    const cpuSeries = [];
    const memSeries = [];
    let last = null;

    const redraw = () => {
      if (!last) return;
      const cpuMax = niceCeiling(Math.max(1, ...cpuSeries) * 1.2);
      drawChart(cpu.canvas, cpuSeries, cpuMax, `${cpuMax} %`);
      const memMax = niceCeiling(Math.max(1 << 20, ...memSeries) * 1.2, 1024);
      drawChart(mem.canvas, memSeries, memMax, formatSize(memMax, true));
    };

    const source = new EventSource(dx.withKey(`/api/docker/containers/${hashPart(id)}/stats`));
    scope.add(() => source.close());
    source.addEventListener("stats", (event) => {
      let s;
      try {
        s = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (!s.running) return;
      last = s;
      cpuSeries.push(Number(s.cpu.percent) || 0);
      memSeries.push(Number(s.memory.used) || 0);
      if (cpuSeries.length > STATS_POINTS) cpuSeries.shift();
      if (memSeries.length > STATS_POINTS) memSeries.shift();
      cpu.value.textContent = `${(Number(s.cpu.percent) || 0).toFixed(2)} %`;
      cpu.sub.textContent = `of ${s.cpu.online * 100} % (${s.cpu.online} CPU${s.cpu.online === 1 ? "" : "s"})`;
      mem.value.textContent = formatSize(s.memory.used, true);
      mem.sub.textContent = `of ${formatSize(s.memory.limit, true)} · ${(Number(s.memory.percent) || 0).toFixed(2)} %`;
      net.value.textContent = `${formatSize(s.network.rx)} / ${formatSize(s.network.tx)}`;
      net.sub.textContent = "received / sent";
      disk.value.textContent = `${formatSize(s.block.read)} / ${formatSize(s.block.write)}`;
      disk.sub.textContent = "read / written";
      pids.value.textContent = String(s.pids);
      pids.sub.textContent = s.pids === 1 ? "process" : "processes";
      note.textContent = `Updated ${new Date(Date.parse(s.read) || Date.now()).toLocaleTimeString()}`;
      redraw();
    });
    source.addEventListener("end", () => {
      source.close();
      note.textContent = "The container stopped.";
    });
    source.addEventListener("failed", (event) => {
      source.close();
      try {
        note.textContent = JSON.parse(event.data).message;
      } catch (_) {
        note.textContent = "The stats stream failed.";
      }
    });
    const resize = new ResizeObserver(() => redraw());
    resize.observe(grid);
    scope.add(() => resize.disconnect());
    const off = onThemeChange(redraw);
    scope.add(off);
  }

  /** The next "round" number at or above n: 1, 2, 5 × a power of the base (10, or 1024 for bytes). */
  function niceCeiling(n, base) {
    const unit = base === 1024 ? Math.pow(1024, Math.floor(Math.log(n) / Math.log(1024))) : 1;
    const scaled = n / unit;
    const power = Math.pow(10, Math.floor(Math.log10(scaled)));
    const step = [1, 2, 5, 10].find((s) => s * power >= scaled) || 10;
    return step * power * unit;
  }

  function drawChart(canvas, values, max, label) {
    if (!canvas || !canvas.isConnected) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const style = getComputedStyle(canvas);
    const color = style.color;
    const grid = style.borderTopColor;
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    for (const f of [0.5, 1]) {
      const y = Math.round(h * f) - 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
      ctx.stroke();
    }
    if (label) {
      ctx.font = `${11 * dpr}px ${getComputedStyle(document.body).fontFamily}`;
      ctx.fillStyle = style.outlineColor;
      ctx.textAlign = "right";
      ctx.textBaseline = "top";
      ctx.fillText(label, w - 2 * dpr, 4 * dpr);
    }
    if (values.length < 2) return;
    const step = w / (STATS_POINTS - 1);
    const x0 = w - step * (values.length - 1);
    const y = (v) => h - 2 * dpr - (Math.min(v, max) / (max || 1)) * (h - 4 * dpr);
    ctx.beginPath();
    values.forEach((v, i) => (i === 0 ? ctx.moveTo(x0, y(v)) : ctx.lineTo(x0 + i * step, y(v))));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5 * dpr;
    ctx.lineJoin = "round";
    ctx.stroke();
    ctx.lineTo(x0 + (values.length - 1) * step, h);
    ctx.lineTo(x0, h);
    ctx.closePath();
    ctx.globalAlpha = 0.14;
    ctx.fillStyle = color;
    ctx.fill();
    ctx.globalAlpha = 1;
  }

  function onThemeChange(fn) {
    const media = window.matchMedia("(prefers-color-scheme: dark)");
    const observer = new MutationObserver(() => fn());
    observer.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    media.addEventListener("change", fn);
    return () => {
      observer.disconnect();
      media.removeEventListener("change", fn);
    };
  }

  // -- terminal --------------------------------------------------------------------------------------

  let xtermLoading = null;

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.addEventListener("load", resolve, { once: true });
      s.addEventListener("error", () => reject(new Error(`cannot load ${src}`)), { once: true });
      document.head.appendChild(s);
    });
  }

  function loadStyle(href) {
    return new Promise((resolve, reject) => {
      const l = document.createElement("link");
      l.rel = "stylesheet";
      l.href = href;
      l.addEventListener("load", resolve, { once: true });
      l.addEventListener("error", () => reject(new Error(`cannot load ${href}`)), { once: true });
      document.head.appendChild(l);
    });
  }

  function loadXterm() {
    if (!xtermLoading) {
      xtermLoading = Promise.all([
        loadStyle("/static/vendor/xterm/xterm.css"),
        loadScript("/static/vendor/xterm/xterm.js").then(() => loadScript("/static/vendor/xterm/addon-fit.js")),
      ]).catch((error) => {
        xtermLoading = null;
        throw error;
      });
    }
    return xtermLoading;
  }

  /*
   * xterm's DOM renderer puts its theme and size rules into <style> elements and truecolor cells into style
   * attributes; the dashboard's CSP (style-src 'self') refuses both. This copies each such <style> into a
   * constructed style sheet and each refused style attribute into the element's CSSOM style, which the
   * policy allows. The rules are xterm's own, made from the options given here, never from engine output.
   */
  function cspStyleAdapter(host) {
    const sheets = new Map();
    const applied = new WeakMap();
    const syncStyle = (node) => {
      let sheet = sheets.get(node);
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheets.set(node, sheet);
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
      }
      sheet.replaceSync(node.textContent || "");
    };
    const fixAttribute = (node) => {
      const value = node.getAttribute("style");
      if (!value || applied.get(node) === value) return;
      node.style.cssText = value;
      applied.set(node, node.getAttribute("style"));
    };
    const visit = (node) => {
      if (node.nodeType !== 1) return;
      if (node.tagName === "STYLE") return syncStyle(node);
      if (node.hasAttribute("style")) fixAttribute(node);
      for (const child of node.querySelectorAll("style, [style]")) {
        if (child.tagName === "STYLE") syncStyle(child);
        else fixAttribute(child);
      }
    };
    const observer = new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === "characterData" || (r.type === "childList" && r.target.tagName === "STYLE")) {
          const styleNode = r.target.nodeType === 1 ? r.target : r.target.parentNode;
          if (styleNode && styleNode.tagName === "STYLE") syncStyle(styleNode);
        }
        for (const n of r.addedNodes) visit(n);
      }
    });
    observer.observe(host, { subtree: true, childList: true, characterData: true });
    visit(host);
    return () => {
      observer.disconnect();
      const gone = new Set(sheets.values());
      document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => !gone.has(s));
      sheets.clear();
    };
  }

  const TERMINAL_THEMES = {
    light: {
      background: "#ffffff",
      foreground: "#1f2328",
      cursor: "#1d63ed",
      cursorAccent: "#ffffff",
      selectionBackground: "rgba(29, 99, 237, 0.22)",
      black: "#24292f",
      red: "#cf222e",
      green: "#116329",
      yellow: "#4d2d00",
      blue: "#0969da",
      magenta: "#8250df",
      cyan: "#1b7c83",
      white: "#6e7781",
      brightBlack: "#57606a",
      brightRed: "#a40e26",
      brightGreen: "#1a7f37",
      brightYellow: "#633c01",
      brightBlue: "#218bff",
      brightMagenta: "#a475f9",
      brightCyan: "#3192aa",
      brightWhite: "#8c959f",
    },
    dark: {
      background: "#0f1317",
      foreground: "#e6eaef",
      cursor: "#6b9dff",
      cursorAccent: "#0f1317",
      selectionBackground: "rgba(107, 157, 255, 0.3)",
      black: "#484f58",
      red: "#ff7b72",
      green: "#3fb950",
      yellow: "#d29922",
      blue: "#58a6ff",
      magenta: "#bc8cff",
      cyan: "#39c5cf",
      white: "#b1bac4",
      brightBlack: "#6e7681",
      brightRed: "#ffa198",
      brightGreen: "#56d364",
      brightYellow: "#e3b341",
      brightBlue: "#79c0ff",
      brightMagenta: "#d2a8ff",
      brightCyan: "#56d4dd",
      brightWhite: "#ffffff",
    },
  };

  function currentScheme() {
    return getComputedStyle(document.documentElement).colorScheme === "dark" ? "dark" : "light";
  }

  function terminalTab(panel, scope, id, page) {
    const running = page.info && page.info.State && page.info.State.Running;
    if (!running) {
      panel.appendChild(
        emptyState(
          "This container is not running",
          "A terminal opens a shell inside a running container.",
          "terminal",
        ),
      );
      return;
    }
    const bar = el("div", "toolbar terminal-toolbar");
    const status = el("span", "live-status");
    const statusDot = el("span", "live-dot");
    statusDot.setAttribute("aria-hidden", "true");
    const statusText = el("span", null, "Connecting…");
    status.append(statusDot, statusText);
    const hint = el("span", "muted small terminal-hint", "F6 moves the focus out of the terminal");
    const restart = button("button button-secondary", "New session", () => connect());
    restart.hidden = true;
    bar.append(status, el("span", "toolbar-spacer"), hint, restart);
    const frame = el("div", "terminal-frame");
    const host = el("div", "terminal-host");
    frame.appendChild(host);
    panel.append(bar, frame);

    const setStatus = (kind, text) => {
      status.dataset.state = kind;
      statusText.textContent = text;
    };

    let term = null;
    let fit = null;
    let ws = null;

    const sendResize = () => {
      if (ws && ws.readyState === WebSocket.OPEN && term) {
        ws.send(JSON.stringify({ resize: { cols: term.cols, rows: term.rows } }));
      }
    };

    const connect = () => {
      if (!term || !scope.alive) return;
      if (ws) ws.close();
      restart.hidden = true;
      term.reset();
      setStatus("connecting", "Connecting…");
      const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${proto}//${window.location.host}/api/docker/containers/${hashPart(id)}/terminal?cols=${term.cols}&rows=${term.rows}`;
      const socket = new WebSocket(dx.withKey(url));
      socket.binaryType = "arraybuffer";
      ws = socket;
      let ended = false;
      socket.addEventListener("message", (event) => {
        if (ws !== socket) return;
        if (typeof event.data !== "string") {
          term.write(new Uint8Array(event.data));
          return;
        }
        let msg = null;
        try {
          msg = JSON.parse(event.data);
        } catch (_) {
          return;
        }
        if (msg.ready) {
          setStatus("live", "Connected");
          term.focus();
        } else if (msg.error) {
          ended = true;
          setStatus("error", String(msg.error.message || "The terminal could not start"));
          restart.hidden = false;
        } else if ("exit" in msg) {
          ended = true;
          const code = msg.exit === null || msg.exit === undefined ? "" : ` (exit code ${msg.exit})`;
          setStatus("ended", `Session ended${code}`);
          term.write("\r\n\x1b[2m[session ended]\x1b[0m\r\n");
          restart.hidden = false;
        }
      });
      socket.addEventListener("close", () => {
        if (ws !== socket || !scope.alive) return;
        if (!ended) {
          setStatus("error", "Disconnected");
          restart.hidden = false;
        }
      });
    };

    loadXterm()
      .then(() => {
        if (!scope.alive) return;
        const unstyle = cspStyleAdapter(host);
        scope.add(unstyle);
        term = new window.Terminal({
          cursorBlink: true,
          fontFamily: getComputedStyle(document.body).getPropertyValue("--mono").trim() || "monospace",
          fontSize: 13,
          lineHeight: 1.2,
          scrollback: 5000,
          theme: TERMINAL_THEMES[currentScheme()],
          allowProposedApi: false,
        });
        fit = new window.FitAddon.FitAddon();
        term.loadAddon(fit);
        term.open(host);
        term.attachCustomKeyEventHandler((event) => {
          if (event.key === "F6" && event.type === "keydown") {
            const selected = panel.parentElement.querySelector('.view-tab[aria-selected="true"]');
            if (selected) selected.focus();
            return false;
          }
          return true;
        });
        const encoder = new TextEncoder();
        term.onData((data) => {
          if (ws && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
        });
        term.onBinary((data) => {
          if (!ws || ws.readyState !== WebSocket.OPEN) return;
          const bytes = new Uint8Array(data.length);
          for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
          ws.send(bytes);
        });
        term.onResize(() => sendResize());
        try {
          fit.fit();
        } catch (_) {
          /* not laid out yet */
        }
        const observer = new ResizeObserver(() => {
          try {
            fit.fit();
          } catch (_) {
            /* hidden */
          }
        });
        observer.observe(frame);
        scope.add(() => observer.disconnect());
        scope.add(
          onThemeChange(() => {
            term.options.theme = TERMINAL_THEMES[currentScheme()];
          }),
        );
        scope.add(() => {
          if (ws) ws.close();
          ws = null;
          term.dispose();
        });
        connect();
      })
      .catch((error) => {
        if (scope.alive) setStatus("error", `The terminal cannot load: ${errorText(error)}`);
      });
  }

  // ------------------------------------------------------------------------------- images, volumes

  /**
   * A panel whose list is one engine list (`GET /api/docker/<name>` answers `{<name>: [...]}`), searchable,
   * polled, shown as a table. Subclasses give columns(), order(a, b), matches(item, query), summary(items),
   * row(item) and detail().
   */
  class ListPanel extends Panel {
    constructor(name, title, { empty }) {
      super(name, title);
      this.emptyText = empty;
      this.query = "";
    }

    list(page, scope) {
      const noun = this.title.toLowerCase();
      const inner = el("div", "view-inner");
      const head = viewHeader(this.title);
      const toolbar = el("div", "toolbar");
      const search = searchBox(`Search ${noun}`, (q) => {
        this.query = q;
        render();
      });
      search.input.value = this.query;
      toolbar.append(
        search.wrap,
        el("span", "toolbar-spacer"),
        iconButton("refresh", "Refresh", () => page.refresh()),
      );
      const body = el("div", "view-body");
      const { card, tbody } = table(this.columns());
      card.hidden = true;
      const loading = loadingState(`Loading ${noun}…`);
      body.append(loading, card);
      inner.append(head.header, toolbar, body);
      this.root.appendChild(inner);

      let items = null;
      let empty = null;
      let failure = null;
      const render = () => {
        if (!items) return;
        const list = items.filter((item) => !this.query || this.matches(item, this.query));
        head.summary.textContent = this.summary(items);
        if (empty) empty.remove();
        empty = null;
        card.hidden = list.length === 0;
        if (list.length === 0) {
          empty = this.query
            ? emptyState(`No matching ${noun}`, `Nothing matches “${this.query}”.`, "search")
            : emptyState(`No ${noun}`, this.emptyText, this.name);
          body.appendChild(empty);
        }
        replaceRows(tbody, list.map((item) => this.row(item)));
      };
      page.refresh = async () => {
        const mine = (page.seq = (page.seq || 0) + 1); // only the latest answer is shown
        try {
          const answer = await dx.api("GET", `/api/docker/${this.name}`);
          if (!scope.alive || mine !== page.seq) return;
          items = (Array.isArray(answer[this.name]) ? answer[this.name] : []).sort((a, b) => this.order(a, b));
          loading.remove();
          if (failure) failure.remove();
          failure = null;
          render();
        } catch (error) {
          if (!scope.alive || mine !== page.seq) return;
          loading.remove();
          if (!items) {
            if (failure) failure.remove();
            failure = errorState(`Cannot list ${noun}`, error, () => page.refresh());
            body.appendChild(failure);
          }
        }
      };
      page.refresh();
      scope.every(POLL_MS * 2, () => page.refresh());
    }
  }

  // --------------------------------------------------------------------------------------- images

  class ImagesPanel extends ListPanel {
    constructor() {
      super("images", "Images", {
        empty: "Images pulled or built on this engine show up here.",
      });
    }

    columns() {
      return [
        { label: "Name" },
        { label: "Tag" },
        { label: "Image ID" },
        { label: "Status" },
        { label: "Created", className: "nowrap" },
        { label: "Size", className: "num" },
      ];
    }

    order(a, b) {
      return (Number(b.Created) || 0) - (Number(a.Created) || 0); // newest first
    }

    matches(img, query) {
      return `${(img.RepoTags || []).join(" ")} ${img.Id}`.toLowerCase().includes(query);
    }

    summary(images) {
      const total = images.reduce((sum, img) => sum + (Number(img.Size) || 0), 0);
      const used = images.filter((img) => img.Containers > 0).length;
      return `${images.length} image${images.length === 1 ? "" : "s"} · ${used} in use · ${formatSize(total)}`;
    }

    row(img) {
      const tr = el("tr");
      tr.dataset.key = img.Id;
      const [repo, tag] = imageName(img);
      const name = el("div", "name-line");
      const link = linkButton(repo, () => dx.navigate(`#/images/${hashPart(img.Id)}`), "open");
      link.classList.add("break-anywhere");
      if (repo === "<none>") link.classList.add("untagged");
      name.appendChild(link);
      const tagCell = el("div", "name-line");
      tagCell.appendChild(el("span", tag === "<none>" ? "mono untagged-text" : "mono", tag || "—"));
      const tags = imageTags(img);
      if (tags.length > 1) {
        const more = el("span", "tag-chip", `+${tags.length - 1}`);
        more.title = tags.slice(1).join("\n");
        more.setAttribute("aria-label", `${tags.length - 1} more tag${tags.length > 2 ? "s" : ""}: ${tags.slice(1).join(", ")}`);
        tagCell.appendChild(more);
      }
      const inUse = img.Containers > 0;
      const pill = el("span", `pill ${inUse ? "pill-ok" : "pill-neutral"}`, inUse ? "In use" : "Unused");
      if (inUse) pill.title = `${img.Containers} container${img.Containers === 1 ? "" : "s"}`;
      tr.append(
        cell(name),
        cell(tagCell),
        cell(el("code", "mono-id", shortId(img.Id))),
        cell(pill),
        cell(timeCell(parseTime(img.Created))),
        cell(formatSize(img.Size), "num nowrap"),
      );
      return tr;
    }

    detail(page, scope, id) {
      const inner = el("div", "view-inner detail-inner scroll");
      const crumbs = breadcrumbs("Images", "#/images", shortId(id));
      inner.append(crumbs, loadingState("Loading image…"));
      this.root.appendChild(inner);
      document.title = "Image · dockext";
      const load = async () => {
        let data;
        try {
          data = await dx.api("GET", `/api/docker/images/${hashPart(id)}`);
        } catch (error) {
          if (!scope.alive) return;
          inner.replaceChildren(crumbs, errorState("Cannot show this image", error, () => load()));
          focusHeadingIfLost(this.root);
          return;
        }
        if (!scope.alive) return;
        const image = data.image || {};
        const tags = imageTags(image);
        const title = tags[0] || shortId(image.Id);
        crumbs.querySelector(".crumb-current").textContent = title;
        document.title = `${title} · Images · dockext`;

        const header = el("header", "detail-header");
        const titleRow = el("div", "detail-title");
        const h1 = el("h1", null, title);
        h1.tabIndex = -1;
        const users = Array.isArray(data.containers) ? data.containers : [];
        titleRow.append(h1, el("span", `pill ${users.length ? "pill-ok" : "pill-neutral"}`, users.length ? "In use" : "Unused"));
        const meta = el("div", "detail-meta");
        const idBox = el("span", "id-box");
        idBox.append(el("code", null, shortId(image.Id)), copyButton(() => image.Id, "Copy image ID"));
        meta.append(
          metaItem("ID", idBox),
          metaItem("Size", formatSize(image.Size)),
          metaItem("Created", timeCell(parseTime(image.Created))),
        );
        if (image.Os || image.Architecture)
          meta.appendChild(metaItem("Platform", `${image.Os || "?"}/${image.Architecture || "?"}${image.Variant ? `/${image.Variant}` : ""}`));
        header.append(titleRow, meta);
        if (tags.length > 1) {
          const chips = el("div", "chips detail-tags");
          for (const t of tags) chips.appendChild(el("span", "chip", t));
          header.appendChild(chips);
        }

        const sections = el("div", "detail-sections");
        const history = Array.isArray(data.history) ? data.history : [];
        const layers = table([
          { label: "#", className: "num" },
          { label: "Created by" },
          { label: "Created", className: "nowrap" },
          { label: "Size", className: "num" },
        ]);
        layers.card.classList.add("layers-card");
        history
          .slice()
          .reverse()
          .forEach((layer, index) => {
            const tr = el("tr");
            const command = String(layer.CreatedBy || "")
              .replace(/^\/bin\/sh -c #\(nop\)\s*/, "")
              .replace(/^\/bin\/sh -c /, "RUN ")
              .trim();
            tr.append(
              cell(String(index + 1), "num muted"),
              cell(el("code", "layer-command", command || "—")),
              cell(timeCell(parseTime(layer.Created))),
              cell(formatSize(layer.Size), "num nowrap"),
            );
            layers.tbody.appendChild(tr);
          });
        sections.appendChild(section(`Layers (${history.length})`, layers.card));
        sections.appendChild(section("Used by", containerLinks(users)));
        const config = image.Config || {};
        const details = keyValueList([
          ["Command", Array.isArray(config.Cmd) ? config.Cmd.join(" ") : null],
          ["Entrypoint", Array.isArray(config.Entrypoint) ? config.Entrypoint.join(" ") : null],
          ["Working dir", config.WorkingDir],
          ["User", config.User],
          ["Exposed ports", config.ExposedPorts ? Object.keys(config.ExposedPorts).join(", ") : null],
          ["Environment", Array.isArray(config.Env) ? config.Env.join("\n") : null],
        ]);
        if (details.childElementCount) sections.appendChild(section("Configuration", details));
        const labels = labelsList(config.Labels);
        if (labels) sections.appendChild(section("Labels", labels));
        sections.appendChild(section("Inspect", jsonCard(image, "docker image inspect")));
        inner.replaceChildren(crumbs, header, sections);
        focusHeadingIfLost(this.root);
      };
      load();
    }
  }

  // -------------------------------------------------------------------------------------- volumes

  class VolumesPanel extends ListPanel {
    constructor() {
      super("volumes", "Volumes", {
        empty: "Volumes keep data beyond the life of a container.",
      });
    }

    columns() {
      return [{ label: "Name" }, { label: "Driver" }, { label: "Status" }, { label: "Created", className: "nowrap" }];
    }

    order(a, b) {
      return String(a.Name).localeCompare(String(b.Name));
    }

    matches(v, query) {
      return String(v.Name).toLowerCase().includes(query);
    }

    summary(volumes) {
      const used = volumes.filter((v) => v.UsageData && v.UsageData.RefCount > 0).length;
      return `${volumes.length} volume${volumes.length === 1 ? "" : "s"} · ${used} in use`;
    }

    row(v) {
      const tr = el("tr");
      tr.dataset.key = v.Name;
      const name = el("div", "name-text");
      const link = linkButton(v.Name, () => dx.navigate(`#/volumes/${hashPart(v.Name)}`), "open");
      link.classList.add("volume-name");
      name.appendChild(link);
      const project = v.Labels && v.Labels["com.docker.compose.project"];
      if (project) name.appendChild(el("div", "sub", `Compose project ${project}`));
      const refs = v.UsageData ? Number(v.UsageData.RefCount) : 0;
      const pill = el("span", `pill ${refs > 0 ? "pill-ok" : "pill-neutral"}`, refs > 0 ? "In use" : "Unused");
      if (refs > 0) pill.title = `${refs} container${refs === 1 ? "" : "s"}`;
      tr.append(cell(name), cell(v.Driver), cell(pill), cell(timeCell(parseTime(v.CreatedAt))));
      return tr;
    }

    detail(page, scope, name) {
      const inner = el("div", "view-inner detail-inner scroll");
      const crumbs = breadcrumbs("Volumes", "#/volumes", name);
      inner.append(crumbs, loadingState("Loading volume…"));
      this.root.appendChild(inner);
      document.title = `${name} · Volumes · dockext`;
      const load = async () => {
        let data;
        try {
          data = await dx.api("GET", `/api/docker/volumes/${hashPart(name)}`);
        } catch (error) {
          if (!scope.alive) return;
          inner.replaceChildren(crumbs, errorState("Cannot show this volume", error, () => load()));
          focusHeadingIfLost(this.root);
          return;
        }
        if (!scope.alive) return;
        const volume = data.volume || {};
        const users = Array.isArray(data.containers) ? data.containers : [];
        const header = el("header", "detail-header");
        const titleRow = el("div", "detail-title");
        const h1 = el("h1", "break-anywhere", volume.Name || name);
        h1.tabIndex = -1;
        titleRow.append(h1, el("span", `pill ${users.length ? "pill-ok" : "pill-neutral"}`, users.length ? "In use" : "Unused"));
        const meta = el("div", "detail-meta");
        meta.append(
          metaItem("Driver", volume.Driver || "—"),
          metaItem("Scope", volume.Scope || "—"),
          metaItem("Created", timeCell(parseTime(volume.CreatedAt))),
        );
        header.append(titleRow, meta);
        const sections = el("div", "detail-sections");
        const mount = el("span", "id-box");
        mount.append(el("code", "break-anywhere", volume.Mountpoint || "—"), copyButton(() => volume.Mountpoint || "", "Copy mount point"));
        sections.appendChild(
          section(
            "Details",
            keyValueList([
              ["Mount point", mount],
              ["Options", volume.Options && Object.keys(volume.Options).length ? JSON.stringify(volume.Options) : null],
            ]),
          ),
        );
        sections.appendChild(section("Used by", containerLinks(users)));
        const labels = labelsList(volume.Labels);
        if (labels) sections.appendChild(section("Labels", labels));
        sections.appendChild(section("Inspect", jsonCard(volume, "docker volume inspect")));
        inner.replaceChildren(crumbs, header, sections);
        focusHeadingIfLost(this.root);
      };
      load();
    }
  }

  // ------------------------------------------------------------------------------------- navigate

  const CONTAINER_ROUTES = {
    viewContainer: "",
    viewContainerLogs: "/logs",
    viewContainerInspect: "/inspect",
    viewContainerTerminal: "/terminal",
    viewContainerStats: "/stats",
  };

  function requireName(args, index, what) {
    const value = args[index];
    if (typeof value !== "string" || value.trim() === "") throw new Error(`${what} must be a non-empty string`);
    return value.trim();
  }

  /** ddClient.desktopUI.navigate.*: {route, args} from the open extension frame. The views show the engine's
   * objects (and a container's terminal runs a shell in it): an extension the user denied "docker" may not
   * open them, nor learn through the answer whether an object exists (found in a security review). */
  async function onNavigate(message, source) {
    const route = String(message && message.route);
    // unknown grants (permissions.json unreadable: null) are no grant, as on the server
    const docker = Boolean(source && source.permissions && source.permissions.docker === true);
    if (!docker && route !== "viewDevEnvironments") {
      throw new Error(`PermissionDenied: ${source.title} may not open the Docker views (dockext permissions)`);
    }
    const args = message && Array.isArray(message.args) ? message.args : [];
    const go = (hash) => {
      // the engine's answer may come after the user left this extension for another: that one stays open
      if (source && typeof source.current === "function" && !source.current()) {
        throw new Error(`${source.title} is no longer open: the navigation was not made`);
      }
      dx.navigate(hash); // leaves the extension tab: its UI is destroyed, as in Docker Desktop
      return null;
    };
    if (route === "viewContainers") return go("#/containers");
    if (route === "viewImages") return go("#/images");
    if (route === "viewVolumes") return go("#/volumes");
    if (route === "viewDevEnvironments") return null; // removed from Docker Desktop: a no-op for old extensions
    if (Object.prototype.hasOwnProperty.call(CONTAINER_ROUTES, route)) {
      const id = requireName(args, 0, "The container id");
      const info = await dx.api("GET", `/api/docker/containers/${hashPart(id)}`);
      return go(`#/containers/${hashPart(info.Id || id)}${CONTAINER_ROUTES[route]}`);
    }
    if (route === "viewImage") {
      const id = requireName(args, 0, "The image id");
      const data = await dx.api("GET", `/api/docker/images/${hashPart(id)}`);
      return go(`#/images/${hashPart((data.image && data.image.Id) || id)}`);
    }
    if (route === "viewVolume") {
      const name = requireName(args, 0, "The volume name");
      const data = await dx.api("GET", `/api/docker/volumes/${hashPart(name)}`);
      return go(`#/volumes/${hashPart((data.volume && data.volume.Name) || name)}`);
    }
    throw new Error(`unknown navigation route: ${route}`);
  }

  // ---------------------------------------------------------------------------------------- start

  if (!panelsRoot || !navRoot) return;
  dx.handle("navigate", onNavigate);
  const panels = [new ContainersPanel(), new ImagesPanel(), new VolumesPanel()];
  for (const panel of panels) panel.register();
})();
