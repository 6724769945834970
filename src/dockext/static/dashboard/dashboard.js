/*
 * dockext dashboard: the sidebar of extension tabs, the home table, the extension frame and toasts.
 *
 * Loaded synchronously from <head>: the theme is applied right away (no flash of the wrong theme), the rest
 * starts on DOMContentLoaded. Everything that comes from the server or from an extension is untrusted and is
 * only ever put into the page as text (textContent, attributes), never as HTML.
 *
 * Server API used (docs/design.md, "HTTP contract"): GET /api/extensions, GET /api/events (SSE),
 * POST /api/ui-instances, DELETE /api/ui-instances/{id}, POST /api/ui-instances/{id}/close (sendBeacon).
 * Routes: "#/" is home, "#/extensions/<key>[?query]" opens that extension's UI (the query reaches the page).
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------------------------------ theme

  const THEME_KEY = "dockext-theme";
  const THEME_MODES = ["system", "light", "dark"];

  function storedThemeMode() {
    try {
      const mode = window.localStorage.getItem(THEME_KEY);
      return THEME_MODES.includes(mode) ? mode : "system";
    } catch (_) {
      return "system";
    }
  }

  function applyThemeMode(mode) {
    const root = document.documentElement;
    if (mode === "system") delete root.dataset.theme;
    else root.dataset.theme = mode;
    const button = document.getElementById("theme-toggle");
    if (button) {
      const next = THEME_MODES[(THEME_MODES.indexOf(mode) + 1) % THEME_MODES.length];
      const label = `Theme: ${mode}. Switch to ${next}`;
      button.dataset.mode = mode;
      button.setAttribute("aria-label", label);
      button.title = label;
    }
  }

  applyThemeMode(storedThemeMode());

  // ------------------------------------------------------------------------------------- constants

  const TOAST_LEVELS = new Set(["success", "warning", "error"]);
  const TOAST_TIMEOUT = { success: 6000, warning: 6000, error: 10000 };
  const MAX_TOASTS = 5;
  const MAX_TOAST_TEXT = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  // the extension frame's sandbox: every allow-* but the allow-top-navigation ones (and storage access, which a
  // frame of its own site does not need)
  const FRAME_SANDBOX = [
    "allow-scripts", "allow-same-origin", "allow-forms", "allow-modals", "allow-popups",
    "allow-popups-to-escape-sandbox", "allow-downloads", "allow-pointer-lock", "allow-presentation",
    "allow-orientation-lock",
  ].join(" ");

  const state = {
    extensions: [], // last GET /api/extensions answer
    loaded: false,
    open: null, // {key, title, instance, origin, frame, imageId}
    opening: null, // key being opened (POST /api/ui-instances in flight), or waiting for its update to end
    waiting: null, // {key, imageId}: the selected extension is being updated; its tab reopens when that ends
    boot: null, // the server's start id (from /api/events): a new one means it restarted
    seq: 0, // bumped on every navigation; stale async work compares against it
  };

  let els = {};
  const removing = new Set(); // keys of the extensions this page is removing (their Remove job runs)
  const JOB_POLL_MS = 400;
  const TRASH_ICON = ["M4 7h16", "M10 11v6", "M14 11v6", "M6 7l1 13h10l1-13", "M9 7V4h6v3"];

  // ------------------------------------------------------------------------------------------- api

  // The session's key: given once at login in the fragment (#dockext-key=...), kept in this origin's storage
  // (the port included, unlike the cookie, which every port of the host is sent), and sent with every API call.
  // A key in the fragment is kept only once the server has taken it: any page (an extension's, through a link
  // or openExternal) can open the dashboard with a fragment of its choosing, and storing that one would send
  // every dashboard tab of this browser to the login page (found in a review).
  const KEY_STORE = "dockext-key";
  let sessionKey = "";
  const keyTaken = (async function takeKey() {
    const given = /^#dockext-key=([A-Za-z0-9_-]{1,128})$/.exec(window.location.hash);
    if (!given) return;
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    let taken = false;
    try {
      const response = await fetch("/api/extensions", {
        headers: { "X-Dockext": "1", "X-Dockext-Key": given[1] },
        credentials: "same-origin",
        cache: "no-store",
      });
      taken = response.ok;
    } catch (_) {
      return; // the server is unreachable: the page says so on its own, and the key is not kept
    }
    if (!taken) return; // not this session's: the key this browser has stays
    sessionKey = given[1];
    try {
      window.localStorage.setItem(KEY_STORE, sessionKey);
    } catch (_) {
      // no storage: this page keeps it, a reload logs in again
    }
  })();

  function authKey() {
    try {
      return window.localStorage.getItem(KEY_STORE) || sessionKey;
    } catch (_) {
      return sessionKey;
    }
  }

  /** url with the session's key as ?key= (EventSource, WebSocket and sendBeacon set no header) */
  function withKey(url) {
    const u = new URL(url, window.location.href);
    u.searchParams.set("key", authKey());
    return /^wss?:/.test(url) ? u.toString() : u.pathname + u.search;
  }

  // A 401 need not mean that the session ended: this browser may have logged in again a moment ago. Its cookie is
  // then the new session's while this page still sends the old one's key. Logged in again in this tab (the login
  // URL opened over the dashboard), the new page replaces this one within moments, but Chromium lets this page
  // start a navigation to the login page until then, and that one would win; logged in again in another tab, that
  // page puts the new key in this origin's storage once its script runs.
  /** After a 401 to a call sent with `usedKey`: waits up to 1.5 s for a newer key; true if one came (try again). */
  async function keyReplaced(usedKey) {
    for (const wait of [100, 200, 400, 800]) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (authKey() !== usedKey) return true;
    }
    return false;
  }

  async function api(method, path, body, retried) {
    const key = authKey();
    const headers = { "X-Dockext": "1", "X-Dockext-Key": key };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (method === "DELETE") init.keepalive = true;
    const response = await fetch(path, init);
    if (response.status === 401) {
      if (!retried && (await keyReplaced(key))) return api(method, path, body, true);
      window.location.assign("/login");
      throw new Error("your dockext session has ended");
    }
    if (response.status === 431 && response.headers.get("X-Dockext-Refused") === "cookies") {
      // a head over dockext's limit for its cookies: the browser holds too many for the site (an extension's
      // page can set them); the answer had it delete them all, the session's too (wire.HttpProtocol._refuse_head)
      window.location.assign("/login?why=cookies");
      throw new Error("your browser sent too many cookies: they were deleted");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message;
      throw new Error(message ? String(message) : `HTTP ${response.status}`);
    }
    return data;
  }

  function instancePath(id) {
    return `/api/ui-instances/${encodeURIComponent(id)}`;
  }

  function destroyInstance(id) {
    api("DELETE", instancePath(id)).catch((e) => console.warn("dockext: closing UI instance failed:", e));
  }

  // --------------------------------------------------------------------------------------- helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** A stroked 24x24 icon from path data; the dashboard's own icons use width 2, the views' 1.8. */
  function svg(paths, size, strokeWidth) {
    const node = document.createElementNS(SVG_NS, "svg");
    node.setAttribute("viewBox", "0 0 24 24");
    node.setAttribute("width", String(size));
    node.setAttribute("height", String(size));
    node.setAttribute("fill", "none");
    node.setAttribute("stroke", "currentColor");
    node.setAttribute("stroke-width", String(strokeWidth || 2));
    node.setAttribute("stroke-linecap", "round");
    node.setAttribute("stroke-linejoin", "round");
    node.setAttribute("aria-hidden", "true");
    node.setAttribute("focusable", "false");
    for (const d of paths) {
      const path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", d);
      node.appendChild(path);
    }
    return node;
  }

  function extTitle(ext) {
    return String((ext && (ext.title || ext.id || ext.key)) || "Extension");
  }

  function hasUi(ext) {
    return Boolean(ext && ext.ui);
  }

  function findExtension(key) {
    return state.extensions.find((ext) => ext.key === key) || null;
  }

  function hue(key) {
    let h = 0;
    for (const ch of String(key)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 8;
  }

  function letterIcon(ext, large) {
    const first = Array.from(extTitle(ext).trim())[0] || "?";
    const node = el("span", `ext-icon ext-icon-letter hue-${hue(ext.key)}${large ? " ext-icon-lg" : ""}`, first.toUpperCase());
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  // <img src=icon alt=""> with the first letter of the title as fallback (no icon, or it fails to load).
  function extIcon(ext, large) {
    if (typeof ext.icon !== "string" || ext.icon === "") return letterIcon(ext, large);
    const img = el("img", `ext-icon${large ? " ext-icon-lg" : ""}`);
    img.alt = "";
    img.decoding = "async";
    img.draggable = false;
    img.dataset.src = ext.icon;
    img.addEventListener("error", () => img.replaceWith(letterIcon(ext, large)), { once: true });
    img.src = ext.icon;
    return img;
  }

  function iconMatches(node, ext) {
    if (typeof ext.icon === "string" && ext.icon !== "") return node.tagName === "IMG" && node.dataset.src === ext.icon;
    return node.tagName !== "IMG" && node.textContent === (Array.from(extTitle(ext).trim())[0] || "?").toUpperCase();
  }

  // ---------------------------------------------------------------------------------------- toasts

  const TOAST_ICONS = {
    success: ["M20 6 9 17l-5-5"],
    warning: ["M12 3 2 20h20L12 3z", "M12 10v4", "M12 17h.01"],
    error: ["M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z", "M15 9l-6 6", "M9 9l6 6"],
  };

  function dismissToast(toast) {
    if (toast.classList.contains("leaving")) return;
    clearTimeout(toast._timer);
    toast.classList.add("leaving");
    const remove = () => toast.remove();
    toast.addEventListener("animationend", remove, { once: true });
    setTimeout(remove, 400); // when animations are off
  }

  function showToast(level, message, source) {
    if (!TOAST_LEVELS.has(level)) return;
    let text = String(message);
    if (text.length > MAX_TOAST_TEXT) text = `${text.slice(0, MAX_TOAST_TEXT)}…`;

    const toast = el("div", `toast toast-${level}`);
    const icon = el("span", "toast-icon");
    icon.appendChild(svg(TOAST_ICONS[level], 18));
    const body = el("div", "toast-body");
    if (source) body.appendChild(el("div", "toast-source", source));
    body.appendChild(el("div", "toast-message", text));
    const close = el("button", "icon-button toast-close");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss notification");
    close.title = "Dismiss";
    close.appendChild(svg(["M6 6l12 12", "M18 6 6 18"], 16));
    close.addEventListener("click", () => dismissToast(toast));
    toast.append(icon, body, close);

    // Auto-dismiss, paused while the pointer or the focus is on the toast.
    let remaining = TOAST_TIMEOUT[level];
    let startedAt = 0;
    const start = () => {
      startedAt = Date.now();
      toast._timer = setTimeout(() => dismissToast(toast), remaining);
    };
    const pause = () => {
      clearTimeout(toast._timer);
      remaining = Math.max(1500, remaining - (Date.now() - startedAt));
    };
    toast.addEventListener("mouseenter", pause);
    toast.addEventListener("mouseleave", start);
    toast.addEventListener("focusin", pause);
    toast.addEventListener("focusout", start);

    const live = Array.from(els.toasts.children).filter((t) => !t.classList.contains("leaving"));
    for (const old of live.slice(0, Math.max(0, live.length - MAX_TOASTS + 1))) dismissToast(old);
    els.toasts.appendChild(toast);
    start();
  }

  // ----------------------------------------------------------------------------------------- tabs

  function tabButtons() {
    return Array.from(els.tabs.querySelectorAll('[role="tab"]'));
  }

  function createTab(ext) {
    const tab = el("button", "tab");
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-selected", "false");
    tab.setAttribute("aria-controls", "frame-host");
    tab.id = `tab-${ext.key}`;
    tab.dataset.key = ext.key;
    tab.tabIndex = -1;
    tab.append(letterIcon(ext), el("span", "tab-label"));
    tab.addEventListener("click", () => navigate(extensionHash(ext.key)));
    return tab;
  }

  function updateTab(tab, ext) {
    const title = extTitle(ext);
    const label = tab.querySelector(".tab-label");
    if (label.textContent !== title) label.textContent = title;
    if (!iconMatches(tab.firstElementChild, ext)) tab.firstElementChild.replaceWith(extIcon(ext));

    let tip = ext.updating ? `${title} (updating…)` : title;
    const dev = ext.dev;
    let badge = tab.querySelector(".tab-dev");
    if (dev) {
      const what = [dev.uiSource ? `UI from ${dev.uiSource}` : null, dev.debug ? "ddClient calls logged" : null];
      tip += ` (developer mode: ${what.filter(Boolean).join(", ")})`;
      if (!badge) {
        badge = el("span", "tab-dev", "dev");
        badge.setAttribute("aria-hidden", "true");
        tab.querySelector(".tab-label").after(badge);
      }
    } else if (badge) {
      badge.remove();
    }
    let status = tab.querySelector(".tab-status");
    const vm = ext.vm;
    const degraded = !ext.updating && vm && vm.total > 0 && vm.running < vm.total;
    if (degraded) {
      tip += ` (backend: ${vm.running} of ${vm.total} running)`;
      if (!status) {
        status = el("span", "tab-status");
        status.setAttribute("aria-hidden", "true");
        tab.appendChild(status);
      }
    } else if (status) {
      status.remove();
    }
    tab.title = tip;
  }

  function renderTabs() {
    const withUi = state.extensions.filter(hasUi);
    const existing = new Map(tabButtons().map((tab) => [tab.dataset.key, tab]));
    withUi.forEach((ext, index) => {
      const tab = existing.get(ext.key) || createTab(ext);
      existing.delete(ext.key);
      updateTab(tab, ext);
      // Only move nodes that are out of place, so a focused tab keeps its focus.
      if (els.tabs.children[index] !== tab) els.tabs.insertBefore(tab, els.tabs.children[index] || null);
    });
    for (const tab of existing.values()) tab.remove();
    els.tabsEmpty.hidden = !state.loaded || withUi.length > 0;
    syncSelection();
  }

  // aria-selected on the open (or opening) tab; roving tabindex: one tab in the Tab order.
  function syncSelection() {
    const selectedKey = state.opening || (state.open && state.open.key);
    const tabs = tabButtons();
    const focused = tabs.find((tab) => tab === document.activeElement);
    let rover = focused || tabs.find((tab) => tab.dataset.key === selectedKey) || tabs[0];
    for (const tab of tabs) {
      const selected = tab.dataset.key === selectedKey;
      tab.setAttribute("aria-selected", selected ? "true" : "false");
      tab.tabIndex = tab === rover ? 0 : -1;
    }
    const panelShown = panelRoutes.some((p) => !p.element.hidden);
    if (selectedKey || panelShown) els.homeButton.removeAttribute("aria-current");
    else els.homeButton.setAttribute("aria-current", "page");
    const selectedTab = tabs.find((tab) => tab.dataset.key === selectedKey);
    if (selectedTab) els.frameHost.setAttribute("aria-labelledby", selectedTab.id);
    else els.frameHost.removeAttribute("aria-labelledby");
  }

  function onTabKeydown(event) {
    const tabs = tabButtons();
    const index = tabs.indexOf(document.activeElement);
    if (index < 0) return;
    let next = null;
    switch (event.key) {
      case "ArrowDown":
      case "ArrowRight":
        next = tabs[(index + 1) % tabs.length];
        break;
      case "ArrowUp":
      case "ArrowLeft":
        next = tabs[(index - 1 + tabs.length) % tabs.length];
        break;
      case "Home":
        next = tabs[0];
        break;
      case "End":
        next = tabs[tabs.length - 1];
        break;
      default:
        return; // Enter and Space activate the focused tab (a <button>).
    }
    event.preventDefault();
    for (const tab of tabs) tab.tabIndex = tab === next ? 0 : -1;
    next.focus();
  }

  // ------------------------------------------------------------------------------------------ home

  function cell(className, content) {
    const td = el("td", className);
    if (content instanceof Node) td.appendChild(content);
    else if (content === null || content === undefined || content === "") td.appendChild(el("span", "none", "—"));
    else td.textContent = String(content);
    return td;
  }

  function backendPill(vm) {
    if (!vm) return null;
    if (vm.elsewhere) {
      // created on another engine than the one dockext reaches now (DOCKER_HOST or the docker context changed)
      const pill = el("span", "pill pill-stopped", "On another engine");
      pill.title = `Its backend is on ${vm.elsewhere}. Point dockext at that engine to use it, or forget it here (its backend stays there).`;
      return pill;
    }
    if (vm.unknown) {
      // the engine did not answer: not "stopped", which would send the user looking at the wrong thing
      const pill = el("span", "pill pill-neutral", "Engine unreachable");
      pill.title = `Its state is unknown: ${vm.unknown}`;
      return pill;
    }
    const running = Number(vm.running) || 0;
    const total = Number(vm.total) || 0;
    let kind = "pill-ok";
    let text = total === 1 ? "Running" : `Running ${running}/${total}`;
    if (running === 0) {
      kind = "pill-stopped";
      text = total > 1 ? `Stopped 0/${total}` : "Stopped";
    } else if (running < total) {
      kind = "pill-partial";
      text = `Running ${running}/${total}`;
    }
    const pill = el("span", `pill ${kind}`, text);
    pill.title = `${running} of ${total} backend container${total === 1 ? "" : "s"} running`;
    return pill;
  }

  function updatingPill() {
    const pill = el("span", "pill pill-updating", "Updating…");
    pill.title = "An update is replacing this extension";
    return pill;
  }

  // What the extension may do (the user's grants, `dockext permissions`) and what its backend got at install.
  function accessChips(ext) {
    const chips = el("div", "chips");
    const add = (text, title, kind) => {
      const chip = el("span", `chip${kind ? ` chip-${kind}` : ""}`, text);
      chip.title = title;
      chips.appendChild(chip);
    };
    const grants = ext.permissions;
    if (!grants) add("grants unreadable", "dockext permissions says why; docker, host and web calls are refused", "denied");
    else if (grants.docker) add("docker", "Its UI may run docker commands and read the engine (dockext permissions)");
    else add("docker: denied", "Its UI may not use the Docker engine (dockext permissions)", "denied");
    const names = ext.host && Array.isArray(ext.host.binaries) ? ext.host.binaries : [];
    for (const name of names) {
      if (grants && grants.host) add(name, "A host binary its UI may run, as you");
      else add(`${name}: denied`, "A host binary its UI may not run (dockext permissions)", "denied");
    }
    // allowed is Docker Desktop's way and says nothing new; denied is worth a chip
    if (grants && ext.ui && !grants.web) {
      add("web: denied", "Its UI's cross-origin requests are made by the browser, under CORS (dockext permissions)",
        "denied");
    }
    const asked = ext.requested || {};
    const withheld = new Set(Array.isArray(ext.withheld) ? ext.withheld : []);
    // what the backend asked for: a risk while it has it, "withheld" once the user took it away (its grant)
    const backend = (grant, text, title) => {
      if (withheld.has(grant)) add(`${text}: withheld`, `${title} (withheld: dockext permissions)`, "denied");
      else add(text, title, "risk");
    };
    if ((asked.privileged || []).length) backend("system", "privileged", `Privileged containers: ${asked.privileged.join(", ")}`);
    if (asked.engineSocket) backend("engine", "engine socket", "Its backend mounts the Docker engine's socket: full control of the engine");
    if ((asked.hostPid || []).length) backend("system", "host PIDs", "Its backend sees the host's processes (pid: host)");
    if ((asked.hostNetwork || []).length) backend("system", "host network", "Its backend is on the host's network");
    if ((asked.hostPaths || []).length) backend("system", "host paths", `Host paths its backend mounts: ${asked.hostPaths.join(", ")}`);
    if ((asked.devices || []).length) backend("system", "devices", `Devices: ${asked.devices.join(", ")}`);
    if ((asked.capabilities || []).length) backend("system", "capabilities", `Added capabilities: ${asked.capabilities.join(", ")}`);
    if ((asked.other || []).length) backend("system", "host access", `More host access: ${asked.other.join(", ")}`);
    if ((asked.networkPorts || []).length) {
      const ports = asked.networkPorts.join(", ");
      if (withheld.has("system")) add("ports: 127.0.0.1 only", `Ports it publishes (${ports}) listen on 127.0.0.1 only, not on the network (withheld: dockext permissions)`, "denied");
      else add("network ports", `Ports it publishes on the machine's network: ${ports}`, "risk");
    }
    if (asked.network && withheld.has("network")) {
      add("network: cut off", "Its backend's containers reach only each other, not the network (withheld: dockext permissions)", "denied");
    }
    if (grants) {
      const edit = el("button", "link-button chip-edit", "Change");
      edit.type = "button";
      edit.setAttribute("aria-label", `Change the permissions of ${extTitle(ext)}`);
      edit.dataset.role = "permissions";
      edit.addEventListener("click", () => editPermissions(ext));
      chips.appendChild(edit);
    }
    return chips;
  }

  // The permissions dialog: what `dockext permissions set` does. Enforced by the server at once.
  function editPermissions(ext) {
    const dialog = el("dialog", "dx-dialog");
    const form = el("form");
    form.method = "dialog";
    const title = el("h2", null, `Permissions of ${extTitle(ext)}`);
    title.id = "dx-dialog-title";
    dialog.setAttribute("aria-labelledby", title.id);
    const toggle = (name, label, hint, checked) => {
      const row = el("label", "dx-check");
      const box = el("input");
      box.type = "checkbox";
      box.name = name;
      box.checked = checked;
      const text = el("span");
      text.append(el("strong", null, label), el("span", "dx-check-hint", hint));
      row.append(box, text);
      return row;
    };
    const fields = [toggle("docker", "Docker engine", "run docker commands and read the container and image lists",
      ext.permissions.docker)];
    const names = ext.host && Array.isArray(ext.host.binaries) ? ext.host.binaries : [];
    if (names.length) fields.push(toggle("host", "Host binaries", `run ${names.join(", ")} as you`, ext.permissions.host));
    if (ext.ui) {
      fields.push(toggle("web", "Web requests", "its page may reach other sites and this machine's ports "
        + "without the browser's CORS rules, as in Docker Desktop: dockext makes those requests", ext.permissions.web));
    }
    const asked = ext.requested;
    if (ext.vm && asked && asked.engineSocket) {
      fields.push(toggle("engine", "Engine socket (backend)",
        "its backend may mount the Docker engine's socket: full control of the engine", ext.permissions.engine));
    }
    const system = ext.vm && asked ? systemParts(asked) : [];
    if (system.length) {
      fields.push(toggle("system", "Host access (backend)", `its backend may have ${system.join(", ")}`,
        ext.permissions.system));
    }
    if (ext.vm && asked && asked.network) {
      fields.push(toggle("network", "Network (backend)",
        "its backend may reach other machines and the internet; without it, its containers reach only each other",
        ext.permissions.network));
    }
    let about = "It has no backend.";
    if (ext.vm && asked) about = backendText(asked);
    else if (ext.vm) about = "What its backend gets was not recorded (installed by an older dockext).";
    const backend = el("p", "dx-dialog-note", about);
    const buttons = el("div", "dx-dialog-buttons");
    const cancel = el("button", "button button-secondary", "Cancel");
    cancel.value = "cancel";
    const save = el("button", "button", "Save");
    save.value = "save";
    buttons.append(cancel, save);
    form.append(title, ...fields, backend, buttons);
    dialog.appendChild(form);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", async () => {
      dialog.remove();
      if (dialog.returnValue !== "save") return;
      const body = {};
      for (const box of form.querySelectorAll("input[type=checkbox]")) body[box.name] = box.checked;
      try {
        const saved = await api("PUT", `/api/extensions/${encodeURIComponent(ext.key)}/permissions`, body);
        const recreated = saved && saved.recreated ? " Its backend was recreated with them." : "";
        showToast("success", `Permissions of ${extTitle(ext)} saved.${recreated}`, "dockext");
      } catch (error) {
        showToast("error", `Could not save the permissions of ${extTitle(ext)}: ${error.message}`, "dockext");
      }
    });
    dialog.showModal();
  }

  // What the "system" grant covers, as the backend asked for it.
  function systemParts(asked) {
    const parts = [];
    if ((asked.privileged || []).length) parts.push(`privileged containers (${asked.privileged.join(", ")})`);
    if ((asked.hostPid || []).length) parts.push("the host's processes");
    if ((asked.hostNetwork || []).length) parts.push("the host's network");
    if ((asked.hostPaths || []).length) parts.push(`host paths (${asked.hostPaths.join(", ")})`);
    if ((asked.devices || []).length) parts.push(`devices (${asked.devices.join(", ")})`);
    if ((asked.capabilities || []).length) parts.push(`capabilities (${asked.capabilities.join(", ")})`);
    if ((asked.other || []).length) parts.push(asked.other.join(", "));
    if ((asked.networkPorts || []).length) parts.push(`ports on the network (${asked.networkPorts.join(", ")})`);
    return parts;
  }

  function backendText(asked) {
    const parts = systemParts(asked);
    if (asked.engineSocket) parts.unshift("the Docker engine's socket");
    return parts.length
      ? `Its compose file asks for ${parts.join(", ")}. Changing a backend permission recreates its backend ` +
        "without (or with) it; its volumes are kept."
      : "Its backend gets nothing from the host beyond its own containers.";
  }

  // The image ID, breakable after each "/" (registry/namespace/name) rather than anywhere.
  function idNode(id) {
    if (!id) return null;
    const node = el("span", "ext-id");
    String(id)
      .split("/")
      .forEach((part, index) => {
        if (index > 0) node.append("/", document.createElement("wbr"));
        node.appendChild(el("span", "nowrap", part));
      });
    return node;
  }

  function extensionRow(ext) {
    const tr = el("tr");
    tr.dataset.key = ext.key;
    const who = el("div", "ext-cell");
    who.appendChild(extIcon(ext, true));
    if (hasUi(ext)) {
      const open = el("button", "link-button", extTitle(ext));
      open.type = "button";
      open.title = `Open ${extTitle(ext)}`;
      open.dataset.role = "open";
      open.addEventListener("click", () => navigate(extensionHash(ext.key)));
      who.appendChild(open);
    } else {
      who.appendChild(el("span", "ext-title", extTitle(ext)));
    }
    tr.append(
      cell("", who),
      cell("", idNode(ext.id)),
      cell("words", ext.provider),
      cell("nowrap", ext.version),
      cell("words", ext.ui && ext.ui.title ? ext.ui.title : null),
      cell("", ext.updating ? updatingPill() : backendPill(ext.vm)),
      cell("", accessChips(ext)),
      cell("row-actions", removeControl(ext)),
    );
    return tr;
  }

  // ------------------------------------------------------------------------------------ remove

  // `dockext rm ID` from the dashboard: any installed extension, however it came (Marketplace, CLI, a file).
  function removeControl(ext) {
    if (removing.has(ext.key)) {
      const status = el("span", "row-busy");
      status.setAttribute("role", "status");
      status.append(el("span", "spinner"), el("span", null, ext.vm && ext.vm.elsewhere ? "Forgetting…" : "Removing…"));
      return status;
    }
    const b = el("button", "icon-button remove-button");
    b.type = "button";
    b.dataset.role = "remove";
    const verb = ext.vm && ext.vm.elsewhere ? "Forget" : "Remove"; // see confirmRemove
    b.setAttribute("aria-label", `${verb} ${extTitle(ext)}`);
    b.title = ext.updating ? `${extTitle(ext)} is being updated` : `${verb} ${extTitle(ext)}`;
    b.disabled = Boolean(ext.updating);
    b.appendChild(svg(TRASH_ICON, 18, 1.8));
    b.addEventListener("click", () => confirmRemove(ext));
    return b;
  }

  // A backend on another engine than the one dockext reaches now cannot be removed from here: the extension is
  // forgotten instead (`dockext rm --forget`), its backend left where it is.
  function confirmRemove(ext) {
    const elsewhere = ext.vm && ext.vm.elsewhere ? String(ext.vm.elsewhere) : "";
    const verb = elsewhere ? "Forget" : "Remove";
    const dialog = el("dialog", "dx-dialog");
    const form = el("form");
    form.method = "dialog";
    const title = el("h2", null, `${verb} ${extTitle(ext)}?`);
    title.id = "dx-dialog-title";
    dialog.setAttribute("aria-labelledby", title.id);
    let what = "Its files go.";
    if (elsewhere) {
      what = `Its backend is on ${elsewhere}, which dockext does not reach now: it stays there, running. ` +
        "dockext forgets the extension (its files here go). To remove the backend too, point dockext at that engine first.";
    } else if (ext.vm) what = "Its backend's containers and networks go, and its files; its named volumes are kept.";
    const buttons = el("div", "dx-dialog-buttons");
    const cancel = el("button", "button button-secondary", "Cancel");
    cancel.value = "cancel";
    const ok = el("button", "button dx-danger", verb);
    ok.value = "ok";
    buttons.append(cancel, ok);
    form.append(title, el("p", null, what), el("p", "dx-ref", ext.id || ext.key), buttons);
    dialog.appendChild(form);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (dialog.returnValue === "ok") removeExtension(ext, Boolean(elsewhere));
      else {
        const again = els.rows.querySelector(`tr[data-key="${CSS.escape(ext.key)}"] [data-role="remove"]`);
        if (again) again.focus({ preventScroll: true }); // back where the person was
      }
    });
    dialog.showModal();
    ok.focus();
  }

  async function removeExtension(ext, forget) {
    const name = extTitle(ext);
    const verb = forget ? "forget" : "remove";
    removing.add(ext.key);
    renderHome();
    try {
      const body = { action: "remove", image: ext.id || ext.key };
      if (forget) body.forget = true;
      let job = (await api("POST", "/api/marketplace/jobs", body)).job;
      job = await followJob(job, () => {});
      if (job.state === "done") {
        const where = forget ? `: its backend stays on ${ext.vm.elsewhere}` : "";
        showToast("success", `${name} ${forget ? "forgotten" : "removed"}${where}.`, "dockext");
      } else {
        const e = job.error || {};
        showToast("error", `Could not ${verb} ${name}: ${e.message || "failed"}${e.hint ? `\n${e.hint}` : ""}`, "dockext");
      }
    } catch (error) {
      showToast("error", `Could not ${verb} ${name}: ${error.message}`, "dockext");
    }
    removing.delete(ext.key);
    renderHome();
  }

  // A job of /api/marketplace/jobs (install, update, remove) followed until it ends; onStep(line) gets its
  // latest step as it comes. Resolves with the job's last state; rejects when the server lost it.
  async function followJob(job, onStep) {
    let misses = 0;
    while (job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
      try {
        job = (await api("GET", `/api/marketplace/jobs/${encodeURIComponent(job.id)}`)).job;
        misses = 0;
      } catch (error) {
        if (/no such job/.test(error.message) || ++misses > 150) {
          throw new Error("the server lost track of it (it restarted?): see dockext ls");
        }
        continue; // the server may be restarting: try again
      }
      if (job.steps.length) onStep(job.steps[job.steps.length - 1]);
    }
    return job;
  }

  function renderHome() {
    els.homeLoading.hidden = state.loaded;
    if (!state.loaded) return;
    els.homeError.hidden = true;
    const count = state.extensions.length;
    els.homeSummary.textContent = count === 0 ? "" : `${count} installed`;
    els.homeEmpty.hidden = count > 0;
    els.homeTable.hidden = count === 0;
    // The list is redrawn whenever it changes (also from a CLI): the focused control keeps the focus.
    const active = document.activeElement;
    const row = active && els.rows.contains(active) ? active.closest("tr") : null;
    els.rows.replaceChildren(...state.extensions.map(extensionRow));
    if (row) {
      const again = Array.from(els.rows.children).find((tr) => tr.dataset.key === row.dataset.key);
      const target = again && (again.querySelector(`[data-role="${active.dataset.role}"]`) || again.querySelector("button"));
      if (target) target.focus({ preventScroll: true });
      else els.main.focus({ preventScroll: true }); // its extension is gone: not lost to <body>
    }
  }

  function showLoadError(error) {
    els.homeLoading.hidden = true;
    els.homeError.hidden = false;
    els.homeErrorText.textContent = String(error && error.message ? error.message : error);
  }

  // -------------------------------------------------------------------------------- routing, frame

  function extensionHash(key, query) {
    return `#/extensions/${encodeURIComponent(key)}${query || ""}`;
  }

  function parseHash() {
    const match = /^#\/extensions\/([^/?]+)(\?.*)?$/.exec(window.location.hash);
    if (!match) return null;
    try {
      return { key: decodeURIComponent(match[1]), query: match[2] || "" };
    } catch (_) {
      return null;
    }
  }

  function navigate(hash) {
    if (window.location.hash === hash) route();
    else window.location.hash = hash; // -> hashchange -> route()
  }

  function setHashQuietly(hash) {
    if (window.location.hash !== hash) history.replaceState(null, "", hash);
  }

  function route() {
    // Home and the other views do not need the extension list: they open also while it is loading, or when
    // it cannot be read (Home then says why).
    const panel = findPanelRoute(window.location.hash);
    if (panel) {
      showPanel(panel);
      return;
    }
    const target = parseHash();
    if (!target) {
      showHome();
      return;
    }
    if (!state.loaded) return; // routed again once the list has arrived
    const current = state.opening || (state.open && state.open.key);
    if (current === target.key) return;
    openExtension(target.key, target.query);
  }

  function closeFrame() {
    const open = state.open;
    state.open = null;
    state.opening = null;
    state.waiting = null;
    if (open) {
      open.frame.remove();
      destroyInstance(open.instance);
    }
    els.frameLoading.hidden = true;
  }

  function showHome() {
    state.seq += 1;
    closeFrame();
    hidePanels();
    els.frameHost.hidden = true;
    els.home.hidden = false;
    document.title = "dockext";
    setHashQuietly(window.location.hash === "" ? "" : "#/");
    syncSelection();
  }

  async function openExtension(key, query) {
    const ext = findExtension(key);
    if (!hasUi(ext)) {
      showHome();
      showToast("warning", `No installed extension with a UI has the key “${key}”.`, "dockext");
      return;
    }
    if (ext.updating) {
      showUpdating(ext, ext.imageId);
      return;
    }
    const title = extTitle(ext);
    const seq = ++state.seq;
    closeFrame();
    hidePanels();
    state.opening = key;
    els.home.hidden = true;
    els.frameHost.hidden = false;
    els.frameLoadingText.textContent = `Starting ${title}…`;
    els.frameLoading.hidden = false;
    document.title = `${title} · dockext`;
    syncSelection();

    let instance;
    try {
      const mode = storedThemeMode();
      instance = await api("POST", "/api/ui-instances", {
        extension: key,
        query: query || "",
        theme: mode === "light" || mode === "dark" ? mode : null,
      });
      const url = new URL(instance.url);
      if (!/^https?:$/.test(url.protocol) || url.origin !== instance.origin) throw new Error("unexpected instance URL");
    } catch (error) {
      if (seq !== state.seq) return;
      showHome();
      showToast("error", `Could not open ${title}: ${error.message}`, "dockext");
      return;
    }
    if (seq !== state.seq) {
      destroyInstance(instance.instance); // the user went elsewhere meanwhile
      return;
    }

    const frame = document.createElement("iframe");
    frame.id = "extension-frame";
    frame.className = "extension-frame loading";
    frame.dataset.key = key;
    frame.title = ext.ui.title || title;
    frame.setAttribute("allow", "clipboard-read; clipboard-write");
    // Everything a page does in Docker Desktop's view, but never navigating this tab: without the sandbox a
    // click in the extension would let it send the whole tab to a page of its own (a copy of the login page
    // asking for the token). Its origin stays its own (allow-same-origin: storage, cookies, fetch to itself),
    // which gives it nothing of the dashboard's, a different origin.
    frame.setAttribute("sandbox", FRAME_SANDBOX);
    frame.addEventListener(
      "load",
      () => {
        frame.classList.remove("loading");
        els.frameLoading.hidden = true;
      },
      { once: true },
    );
    frame.src = instance.url;
    state.opening = null;
    state.open = { key, title, instance: instance.instance, origin: instance.origin, frame, imageId: ext.imageId };
    els.frameHost.appendChild(frame);
    syncSelection();
  }

  // An update is replacing the selected extension: no UI can run meanwhile (the server closed it). The tab
  // stays selected behind a "Updating…" screen and opens again when the update ends, either way.
  function showUpdating(ext, imageId) {
    const title = extTitle(ext);
    state.seq += 1;
    closeFrame();
    hidePanels();
    state.opening = ext.key;
    state.waiting = { key: ext.key, imageId };
    els.home.hidden = true;
    els.frameHost.hidden = false;
    els.frameLoadingText.textContent = `Updating ${title}…`;
    els.frameLoading.hidden = false;
    document.title = `${title} · dockext`;
    syncSelection();
  }

  // Messages from the open extension: only from its frame's window and its origin.
  function onMessage(event) {
    const open = state.open;
    if (!open || event.source !== open.frame.contentWindow || event.origin !== open.origin) return;
    const data = event.data;
    if (!data || typeof data !== "object" || typeof data.dockext !== "string") return;
    if (data.dockext === "toast") {
      if (TOAST_LEVELS.has(data.level)) showToast(data.level, String(data.message ?? ""), open.title);
    } else if (data.dockext === "openExternal") {
      let url;
      try {
        url = new URL(String(data.url));
      } catch (_) {
        return;
      }
      if (url.protocol === "http:" || url.protocol === "https:") window.open(url.href, "_blank", "noopener,noreferrer");
    } else if (Object.prototype.hasOwnProperty.call(messageHandlers, data.dockext)) {
      // Request/reply messages (navigate, dialog...): the answer goes back to that frame's origin only.
      const frame = open.frame;
      const reply = (result) => {
        if (frame.contentWindow) {
          frame.contentWindow.postMessage({ dockext: "reply", id: data.id, ...result }, open.origin);
        }
      };
      Promise.resolve()
        .then(() => {
          const ext = findExtension(open.key);
          const permissions = (ext && ext.permissions) || null; // the user's grants (null: unreadable)
          // current(): whether that frame is still the one open (an answer that comes after the user left it
          // must not act: a navigation then would close the extension the user went to)
          const current = () => state.open === open;
          return messageHandlers[data.dockext](data, { key: open.key, title: open.title, origin: open.origin, permissions, current });
        })
        .then((value) => reply({ ok: true, value: value === undefined ? null : value }))
        .catch((error) => reply({ ok: false, error: { message: String(error && error.message ? error.message : error) } }));
    }
  }

  // --------------------------------------------------- extension points for the other dashboard modules

  const messageHandlers = Object.create(null); // dockext message type -> async (data, source) => value
  const panelRoutes = []; // {prefix, element, show(hash)}

  function findPanelRoute(hash) {
    return panelRoutes.find((p) => hash === p.prefix || hash.startsWith(p.prefix + "/")) || null;
  }

  function hidePanels() {
    for (const p of panelRoutes) p.element.hidden = true;
    for (const b of document.querySelectorAll(".nav-item[data-panel]")) b.removeAttribute("aria-current");
  }

  function showPanel(panel) {
    state.seq += 1;
    closeFrame(); // leaving an extension tab destroys its UI, also when the extension asked to navigate
    hidePanels();
    els.home.hidden = true;
    els.frameHost.hidden = true;
    panel.element.hidden = false;
    els.homeButton.removeAttribute("aria-current");
    const nav = document.querySelector(`.nav-item[data-panel="${panel.prefix}"]`);
    if (nav) nav.setAttribute("aria-current", "page");
    syncSelection();
    panel.show(window.location.hash);
  }

  /** The small API other dashboard scripts (views.js, dialog.js) build on. */
  window.dockext = Object.freeze({
    api: (method, path, body) => api(method, path, body),
    /** the session's key, for requests made without api() (its header: X-Dockext-Key) */
    key: () => authKey(),
    /** keyReplaced(usedKey): after a 401, whether a newer key came within moments (then try again, once) */
    keyReplaced: (usedKey) => keyReplaced(usedKey),
    /** url with the session's key in its query, for EventSource and WebSocket */
    withKey: (url) => withKey(url),
    /** el(tag, className, text): an element; text is set as text, never parsed as HTML */
    el,
    svg,
    toast: (level, message, source) => showToast(level, message, source || "dockext"),
    navigate: (hash) => navigate(hash),
    /** followJob(job, onStep): an /api/marketplace/jobs job followed until it ends (see followJob) */
    followJob: (job, onStep) => followJob(job, onStep),
    /** handle(type, async fn(data, source)): a request from the open extension frame; fn's value is the reply */
    handle(type, fn) {
      messageHandlers[type] = fn;
    },
    /** panel(prefix, element, show): hashes equal to prefix or under prefix + "/" show element */
    panel(prefix, element, show) {
      panelRoutes.push({ prefix, element, show });
      if (state.loaded && findPanelRoute(window.location.hash)) route();
    },
  });

  // ------------------------------------------------------------------------------ list, live updates

  let refreshing = false;
  let refreshAgain = false;

  async function refresh() {
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    try {
      do {
        refreshAgain = false;
        const list = await api("GET", "/api/extensions");
        applyExtensions(Array.isArray(list) ? list : []);
      } while (refreshAgain);
    } catch (error) {
      if (!state.loaded) {
        showLoadError(error);
        route(); // a link to another view still opens it
      } else {
        console.warn("dockext: refreshing the extension list failed:", error);
      }
    } finally {
      refreshing = false;
    }
  }

  function applyExtensions(list) {
    const firstLoad = !state.loaded;
    state.extensions = list.filter((ext) => ext && typeof ext.key === "string");
    state.loaded = true;
    renderTabs();
    renderHome();
    const current = state.opening || (state.open && state.open.key);
    const ext = current ? findExtension(current) : null;
    const waiting = state.waiting;
    if (current && !hasUi(ext)) {
      const title = state.open ? state.open.title : current;
      showHome();
      showToast("warning", `${title} was removed, so its tab was closed.`, "dockext");
    } else if (ext && ext.updating) {
      if (!waiting) showUpdating(ext, state.open ? state.open.imageId : ext.imageId);
    } else if (waiting && waiting.key === current) {
      if (ext.imageId !== waiting.imageId) {
        showToast("success", `${extTitle(ext)} was updated to ${ext.version}.`, "dockext");
      } else {
        showToast("warning", `The update of ${extTitle(ext)} did not complete: version ${ext.version} is back.`, "dockext");
      }
      openExtension(current, "");
    } else if (state.open && ext.imageId !== state.open.imageId) {
      // updated between two looks at the list: the server has closed the old UI; start the new version's
      showToast("success", `${extTitle(ext)} was updated to ${ext.version}.`, "dockext");
      openExtension(state.open.key, "");
    }
    if (firstLoad) route();
  }

  function connectEvents() {
    const source = new EventSource(withKey("/api/events"));
    let wasDown = false;
    source.addEventListener("extensions", (event) => {
      let boot = null;
      try {
        boot = JSON.parse(event.data).boot;
      } catch (error) {
        boot = null;
      }
      if (state.boot && boot && boot !== state.boot && state.open) {
        // The server restarted: the open UI's instance is gone with it. The session survived; start a new UI.
        const key = state.open.key;
        state.boot = boot;
        refresh().then(() => openExtension(key, ""));
        return;
      }
      if (boot) state.boot = boot;
      refresh();
    });
    source.addEventListener("open", () => {
      els.connection.hidden = true;
      if (wasDown) refresh(); // changes may have happened while disconnected
      wasDown = false;
    });
    source.addEventListener("error", () => {
      wasDown = true;
      els.connection.hidden = false;
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. the server answered 401 or went away for good): refresh() sends the user
        // to the login page at once if the session has ended; otherwise try again in a moment.
        refresh();
        setTimeout(connectEvents, 5000);
      }
    });
  }

  // ----------------------------------------------------------------------------------------- start

  function start() {
    els = {
      tabs: document.getElementById("tabs"),
      tabsEmpty: document.getElementById("tabs-empty"),
      homeButton: document.getElementById("home-button"),
      home: document.getElementById("home"),
      homeLoading: document.getElementById("home-loading"),
      homeError: document.getElementById("home-error"),
      homeErrorText: document.getElementById("home-error-text"),
      homeEmpty: document.getElementById("home-empty"),
      homeTable: document.getElementById("home-table"),
      homeSummary: document.getElementById("home-summary"),
      rows: document.getElementById("ext-rows"),
      frameHost: document.getElementById("frame-host"),
      frameLoading: document.getElementById("frame-loading"),
      frameLoadingText: document.getElementById("frame-loading-text"),
      toasts: document.getElementById("toasts"),
      connection: document.getElementById("connection"),
      main: document.getElementById("main"),
    };

    // Log out: the server revokes the session (a copy of the cookie is refused too); the key goes from storage
    document.getElementById("logout").addEventListener("click", async () => {
      try {
        // the open extension's UI first: once logged out, the page's close on leaving would be refused
        if (state.open) {
          const { instance } = state.open;
          state.open = null;
          await api("DELETE", instancePath(instance)).catch((e) => console.warn("dockext: closing UI failed:", e));
        }
        await api("POST", "/api/logout");
      } catch (error) {
        showToast("error", `Could not log out: ${error.message}`, "dockext");
        return;
      }
      try {
        window.localStorage.removeItem(KEY_STORE);
      } catch (_) {
        // no storage: nothing kept
      }
      window.location.assign("/login");
    });

    const themeButton = document.getElementById("theme-toggle");
    applyThemeMode(storedThemeMode());
    themeButton.addEventListener("click", () => {
      const mode = THEME_MODES[(THEME_MODES.indexOf(storedThemeMode()) + 1) % THEME_MODES.length];
      try {
        window.localStorage.setItem(THEME_KEY, mode);
      } catch (_) {
        /* storage disabled: the choice lasts for this page only */
      }
      applyThemeMode(mode);
      if (state.open) openExtension(state.open.key, ""); // a fresh UI in the new theme
    });
    window.addEventListener("storage", (event) => {
      if (event.key === THEME_KEY) applyThemeMode(storedThemeMode());
    });

    els.homeButton.addEventListener("click", () => navigate("#/"));
    document.querySelector(".skip-link").addEventListener("click", (event) => {
      // Its href, "#main", would be routed like any hash (to Home, closing what is open): only move the focus.
      event.preventDefault();
      if (state.open && !els.frameHost.hidden) state.open.frame.focus();
      else els.main.focus();
    });
    els.tabs.addEventListener("keydown", onTabKeydown);
    els.tabs.addEventListener("focusin", (event) => {
      if (event.target.getAttribute("role") === "tab") {
        for (const tab of tabButtons()) tab.tabIndex = tab === event.target ? 0 : -1;
      }
    });
    document.getElementById("home-retry").addEventListener("click", () => {
      els.homeError.hidden = true;
      els.homeLoading.hidden = false;
      refresh();
    });
    const copyButton = document.getElementById("copy-command");
    copyButton.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(document.getElementById("install-command").textContent);
        copyButton.classList.add("copied");
        copyButton.title = "Copied";
        setTimeout(() => {
          copyButton.classList.remove("copied");
          copyButton.title = "Copy";
        }, 1500);
      } catch (_) {
        /* clipboard unavailable */
      }
    });

    window.addEventListener("hashchange", route);
    window.addEventListener("message", onMessage);
    window.addEventListener("pagehide", () => {
      if (state.open) navigator.sendBeacon(withKey(`${instancePath(state.open.instance)}/close`));
    });
    window.addEventListener("pageshow", (event) => {
      // Back from the back/forward cache: the instance was closed on pagehide; open a fresh one.
      if (event.persisted && state.open) {
        state.open.frame.remove();
        state.open = null;
        route();
      }
    });

    keyTaken.then(() => {
      // the key of a fresh login is in (or was refused) before the first call sends one
      refresh();
      connectEvents();
      showEngine();
    });
  }

  // Which engine this dockext manages: "Local engine", or the remote address (the full description in the title).
  async function showEngine() {
    let info;
    try {
      info = await api("GET", "/api/engine");
    } catch (_) {
      return; // the pill stays hidden; the views say when the engine cannot be reached
    }
    const pill = document.getElementById("engine-pill");
    const local = info.remote === false && info.source === "default";
    document.getElementById("engine-name").textContent = local ? "Local engine" : String(info.host);
    pill.dataset.remote = String(info.remote === true);
    pill.title = `Docker engine: ${info.description}` +
      (info.remote ? " (a remote engine: backends are reached through a relay container)" : "");
    pill.hidden = false;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start, { once: true });
  else start();
})();
