/*
 * dockext: window.ddClient for Docker Desktop extension UIs.
 *
 * Served by dockext as `window.__dockextConfig = {...};` + themes.js + this file, as one classic script that
 * runs before the page's own scripts (docs/design.md, "HTTP contract"). It implements the v1 API of
 * @docker/extension-api-client-types 0.4.2 and the deprecated v0 members on one object, like Docker Desktop.
 *
 * Every request goes to the page's own origin under config.api (the UI instance's capability path) and carries
 * `X-Dockext: 1`. Nothing else ever sees config.api.
 *
 * Failure shapes (what `catch (e)` receives):
 *
 *  - vm.service / backend HTTP calls
 *      backend answered non-2xx      {name: "ServiceError", message: <response body text>, statusCode: <status>}
 *                                    (the ServiceError interface of the typings; message is the raw body)
 *      backend unreachable           {name: "BackendError", message: <dockext's explanation>, statusCode: 502}
 *                                    (dockext answered 502 with X-Dockext-Proxy-Error: 1)
 *      dockext itself unreachable    an Error ("dockext is unreachable: ..."), like Docker Desktop's transport
 *                                    errors (statusCode undefined)
 *      bad URL (not a "/path")       a TypeError, without any request
 *    The plain objects have a non-enumerable toString() giving "name: message".
 *
 *  - exec (docker.cli.exec, extension.vm.cli.exec, extension.host.cli.exec and the v0 exec* members)
 *      exit code 0                   resolves {cmd, stdout, stderr} (no `code`, as in Docker Desktop)
 *      non-zero exit / killed        rejects {killed, code, signal, cmd, stdout, stderr} (Node's exec error shape)
 *      refused or not run at all     rejects {killed: false, code: 126, signal: null, cmd, stdout: "",
 *                                    stderr: <reason>, name: "ExecRefused" | "ExecError", message: <reason>}
 *                                    (code 126 = "cannot execute"; the reason is in stderr for extensions that
 *                                    show e.stderr and in message for those that show e.message)
 *    All three carry non-enumerable lines(), parseJsonLines(), parseJsonObject(); rejections also toString().
 *
 *  - streaming exec (the {stream: {onOutput, onError, onClose, splitOutputLines}} overload of the three execs,
 *    and the v0 spawn* members): one WebSocket per process (docs/design.md, "Streaming exec"). `args` are passed
 *    verbatim as argv (no re-splitting, as in Docker Desktop). onOutput gets {stdout} or {stderr}, one key per
 *    call, as the output arrives; with splitOutputLines one call per complete line ("\n" removed), and a last
 *    line without "\n" is delivered when the process exits. onClose(exitCode) is called exactly once, last:
 *      process exited                its exit status
 *      killed by signal N            128 + N (143 for SIGTERM, so normally 143 after close(); 137 for SIGKILL):
 *                                    a number, as the typings promise, where Node would give null. A process
 *                                    that catches SIGTERM reports its own status (the docker CLI 28+ may exit 0)
 *      refused by dockext's policy   onError({name: "ExecRefused", message}), then onClose(126)
 *      could not start               onError({name: "ExecError", message}), then onClose(127) when the binary
 *                                    or the cwd does not exist, 126 when it cannot be executed
 *      connection to dockext lost    onError(Error "dockext connection lost ..."), then onClose(-1)
 *                                    (after close() it is not an error: onClose(143))
 *    close() asks dockext to end the process group (SIGTERM, then SIGKILL after 2 s); output produced
 *    meanwhile is still delivered, then onClose. Exceptions thrown by the callbacks are reported (rethrown
 *    asynchronously) and do not stop the stream.
 *
 *  - navigate.* and dialog.showOpenDialog: request/reply postMessage to the dashboard (docs/design.md,
 *    "Messages between an extension frame and the dashboard"); navigate resolves undefined or rejects an Error.
 *  - docker.listContainers / listImages: the Engine API's JSON; failures reject an Error with dockext's message.
 *  - the page's own cross-origin fetch / XMLHttpRequest / EventSource, made by the host (`web` permission,
 *    below): the site's answer as it came; a request dockext cannot make rejects a TypeError "Failed to fetch:
 *    <reason>" (fetch), is a network error as the browser's own (XMLHttpRequest: status 0 and `error`, the
 *    reason in the console), or is an `error` and a reconnection (EventSource).
 */
(function () {
  "use strict";

  const config = window.__dockextConfig;
  if (!config || typeof config.api !== "string") {
    console.error("dockext: window.__dockextConfig is missing; window.ddClient is not available");
    return;
  }
  const API = config.api;
  const extension = config.extension || {};
  const hostInfo = config.host || {};
  // Captured now, so that a page replacing window.fetch does not intercept the SDK's own calls.
  const nativeFetch = window.fetch.bind(window);

  // The dashboard's own light/dark choice, when the user forced one: media queries on prefers-color-scheme
  // made through matchMedia (what MUI and @docker/docker-mui-theme use) answer as that choice would.
  if (config.theme === "light" || config.theme === "dark") {
    const forced = config.theme;
    const nativeMatchMedia = window.matchMedia.bind(window);
    const scheme = /^\s*\(\s*prefers-color-scheme\s*:\s*(light|dark)\s*\)\s*$/i;
    window.matchMedia = function matchMedia(query) {
      const m = scheme.exec(String(query));
      if (!m) return nativeMatchMedia(query);
      const list = nativeMatchMedia(query);
      const matches = m[1].toLowerCase() === forced;
      return new Proxy(list, {
        get(target, prop) {
          if (prop === "matches") return matches;
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    };
    document.documentElement.style.colorScheme = forced;
  }

  // ---------------------------------------------------------------------------------------------- web requests

  // Docker Desktop applies no CORS to extension views, and extensions rely on it: an OAuth token endpoint,
  // http://localhost:PORT of a port their backend publishes. With the `web` permission (config.web), a
  // cross-origin http(s) request of the page, through fetch or XMLHttpRequest, goes to dockext instead, which
  // makes it from the host with the page's method, headers and body and passes the answer back as it came
  // (docs/design.md, "Web requests"). Without it, or when the user withholds it while the page is open, the
  // browser makes the request itself, under CORS. A request dockext cannot make fails as a fetch does: a
  // TypeError, with dockext's reason in its message. An XMLHttpRequest cannot be failed from script: dockext
  // answers its failures with a redirect the browser refuses, so it fails as a network error (status 0,
  // `error`), as it would without dockext (for a request made after the user withheld the permission too).
  const WEB = `${API}/web`;

  function webTarget(url) {
    if (!config.web) return null;
    let u;
    try {
      const base = (typeof document !== "undefined" && document.baseURI) || window.location.href;
      u = new URL(String(url), base);
    } catch (e) {
      return null;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") return null;
    return u.origin === new URL(window.location.href).origin ? null : u.href;
  }

  async function webFailure(response) {
    let message = `dockext answered ${response.status}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (e) {
      // not our JSON: keep the status
    }
    return new TypeError(`Failed to fetch: ${message}`);
  }

  window.fetch = function fetch(input, init) {
    let request;
    try {
      request = new Request(input, init);
    } catch (e) {
      return nativeFetch(input, init); // the browser's own error for a bad call
    }
    const target = webTarget(request.url);
    if (target === null) return nativeFetch(request);
    return (async () => {
      const body = request.method === "GET" || request.method === "HEAD" ? undefined : await request.arrayBuffer();
      const headers = new Headers(request.headers);
      headers.set("X-Dockext", "1");
      headers.set("X-Dockext-Target", target);
      headers.set("X-Dockext-Redirect", request.redirect);
      const response = await nativeFetch(WEB, {
        method: request.method, headers, body, redirect: request.redirect, signal: request.signal,
        cache: request.cache, keepalive: request.keepalive, credentials: "same-origin",
      });
      const failed = response.headers.get("X-Dockext-Proxy-Error");
      if (failed === "withheld") {
        return nativeFetch(request.url, {
          method: request.method, headers: request.headers, body, mode: request.mode, credentials: request.credentials,
          cache: request.cache, redirect: request.redirect, referrerPolicy: request.referrerPolicy,
          integrity: request.integrity, keepalive: request.keepalive, signal: request.signal,
        });
      }
      if (failed) throw await webFailure(response);
      Object.defineProperty(response, "url", { value: response.headers.get("X-Dockext-Url") || target });
      if (response.headers.get("X-Dockext-Redirected")) Object.defineProperty(response, "redirected", { value: true });
      return response;
    })();
  };

  if (typeof window.XMLHttpRequest === "function") wrapXMLHttpRequest(window.XMLHttpRequest);

  function wrapXMLHttpRequest(XMLHttpRequest) {
    const xhrTargets = new WeakMap();
    const xhrOpen = XMLHttpRequest.prototype.open;
    const xhrSetRequestHeader = XMLHttpRequest.prototype.setRequestHeader;
    const xhrGetResponseHeader = XMLHttpRequest.prototype.getResponseHeader;
    const xhrResponseURL = Object.getOwnPropertyDescriptor(XMLHttpRequest.prototype, "responseURL");
    XMLHttpRequest.prototype.open = function open(method, url, ...rest) {
      const target = webTarget(url);
      if (target === null) {
        xhrTargets.delete(this);
        return xhrOpen.call(this, method, url, ...rest);
      }
      xhrTargets.set(this, target);
      xhrOpen.call(this, method, WEB, rest.length ? rest[0] : true);
      xhrSetRequestHeader.call(this, "X-Dockext", "1");
      xhrSetRequestHeader.call(this, "X-Dockext-Target", target);
      xhrSetRequestHeader.call(this, "X-Dockext-Failure", "network-error");
      const [user, password] = rest.slice(1);
      if (user != null) {
        xhrSetRequestHeader.call(this, "Authorization", `Basic ${btoa(`${user}:${password ?? ""}`)}`);
      }
      return undefined;
    };
    if (xhrResponseURL && xhrResponseURL.get) {
      Object.defineProperty(XMLHttpRequest.prototype, "responseURL", {
        configurable: true,
        enumerable: xhrResponseURL.enumerable,
        get() {
          const target = xhrTargets.get(this);
          if (target === undefined) return xhrResponseURL.get.call(this);
          return this.readyState >= 2 ? xhrGetResponseHeader.call(this, "X-Dockext-Url") || target : "";
        },
      });
    }
  }

  if (typeof window.EventSource === "function" && config.web) window.EventSource = webEventSource(window.EventSource);

  // An event stream of another origin (server-sent events) is read through the fetch above, so it goes
  // through the host too: EventSource of another origin is under CORS in a browser, not in Docker Desktop.
  // What the WHATWG spec says an EventSource does, on top of that fetch: `open`, a `message` (or the stream's
  // own `event:` type) per event, `id:` sent back as Last-Event-ID when it reconnects after `retry:` ms (3 s
  // until the stream says), an answer other than 200 text/event-stream fails the source for good, close()
  // ends it. Same-origin sources, and every source without the permission, are the browser's own.
  function webEventSource(NativeEventSource) {
    const [CONNECTING, OPEN, CLOSED] = [0, 1, 2];

    class EventSource extends EventTarget {
      constructor(url, init) {
        const target = webTarget(url);
        if (target === null) return new NativeEventSource(url, init);
        super();
        this.url = target;
        this.withCredentials = Boolean(init && init.withCredentials);
        this.readyState = CONNECTING;
        this.onopen = this.onmessage = this.onerror = null;
        this._retry = 3000;
        this._lastId = "";
        this._controller = null;
        setTimeout(() => this._connect(), 0); // after the page has set its handlers, as a browser does
      }

      close() {
        this.readyState = CLOSED;
        if (this._controller) this._controller.abort();
      }

      _fire(event) {
        this.dispatchEvent(event);
        const handler = this[`on${event.type}`];
        if (["open", "message", "error"].includes(event.type) && typeof handler === "function") {
          handler.call(this, event);
        }
      }

      async _connect() {
        if (this.readyState === CLOSED) return;
        const controller = (this._controller = new AbortController());
        const headers = { Accept: "text/event-stream", "Cache-Control": "no-cache" };
        if (this._lastId) headers["Last-Event-ID"] = this._lastId;
        let response;
        try {
          response = await window.fetch(this.url, {
            headers, signal: controller.signal, cache: "no-store",
            credentials: this.withCredentials ? "include" : "same-origin",
          });
        } catch (e) {
          this._lost();
          return;
        }
        const type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
        if (this.readyState === CLOSED) return;
        if (response.status !== 200 || type !== "text/event-stream" || !response.body) {
          this.readyState = CLOSED;
          this._fire(new Event("error"));
          return;
        }
        this.readyState = OPEN;
        this._fire(new Event("open"));
        const origin = new URL(response.url || this.url).origin;
        const reader = response.body.getReader();
        const decoder = new TextDecoder(); // UTF-8, a leading BOM dropped, as the spec says
        let pending = "";
        let data = "";
        let eventType = "";
        let idBuffer = this._lastId;
        const line = (text) => {
          if (text === "") {
            this._lastId = idBuffer;
            if (data !== "") {
              const event = new MessageEvent(eventType || "message", {
                data: data.endsWith("\n") ? data.slice(0, -1) : data, origin, lastEventId: idBuffer,
              });
              if (this.readyState !== CLOSED) this._fire(event);
            }
            data = eventType = "";
            return;
          }
          if (text.startsWith(":")) return;
          const colon = text.indexOf(":");
          const field = colon < 0 ? text : text.slice(0, colon);
          let value = colon < 0 ? "" : text.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") eventType = value;
          else if (field === "data") data += `${value}\n`;
          else if (field === "id" && !value.includes("\0")) idBuffer = value;
          else if (field === "retry" && /^[0-9]+$/.test(value)) this._retry = Number(value);
        };
        let afterCR = false; // the last text ended with "\r": a "\n" starting the next one belongs to it
        const feed = (text) => {
          if (text === "") return;
          let start = afterCR && text[0] === "\n" ? 1 : 0;
          afterCR = false;
          for (let i = start; i < text.length; i += 1) {
            if (text[i] !== "\r" && text[i] !== "\n") continue;
            line(pending + text.slice(start, i));
            pending = "";
            if (text[i] === "\r") {
              if (i + 1 === text.length) afterCR = true;
              else if (text[i + 1] === "\n") i += 1;
            }
            start = i + 1;
          }
          pending += text.slice(start);
        };
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            feed(decoder.decode(value, { stream: true }));
          }
        } catch (e) {
          // the stream broke off (or close() aborted it): as its end
        }
        this._lost();
      }

      _lost() {
        if (this.readyState === CLOSED) return;
        this.readyState = CONNECTING;
        this._fire(new Event("error"));
        setTimeout(() => this._connect(), this._retry);
      }
    }
    Object.assign(EventSource, { CONNECTING, OPEN, CLOSED });
    Object.assign(EventSource.prototype, { CONNECTING, OPEN, CLOSED });
    // a same-origin source is the browser's own object: `instanceof EventSource` holds for both kinds
    Object.defineProperty(EventSource, Symbol.hasInstance, {
      value: (o) => o instanceof NativeEventSource || Function.prototype[Symbol.hasInstance].call(EventSource, o),
    });
    return EventSource;
  }

  // ---------------------------------------------------------------------------------------------- helpers

  // A GET or HEAD that fails in the network (fetch rejects with a TypeError) is sent once more after a
  // moment. Chromium aborts every request in flight when the host's network changes, which Docker does
  // whenever it creates a network or starts a container (net::ERR_NETWORK_CHANGED): a read should not fail
  // for that. Other methods are never repeated, since the first attempt may have done its work.
  const RETRY_AFTER_MS = 150;
  async function fetchRetryingReads(url, init) {
    const method = String((init && init.method) || "GET").toUpperCase();
    try {
      return await nativeFetch(url, init);
    } catch (e) {
      if (!e || e.name !== "TypeError" || (method !== "GET" && method !== "HEAD")) throw e;
      await new Promise((resolve) => setTimeout(resolve, RETRY_AFTER_MS));
      return nativeFetch(url, init);
    }
  }

  function hidden(obj, name, value) {
    Object.defineProperty(obj, name, { value, writable: true, configurable: true, enumerable: false });
  }

  function splitLines(text) {
    const lines = String(text ?? "").split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    return lines;
  }

  // lines(): stdout split on "\n" without the final empty line; parseJsonLines(): JSON.parse of every
  // non-blank line; parseJsonObject(): JSON.parse(stdout).
  function withExecHelpers(obj) {
    hidden(obj, "lines", function () {
      return splitLines(this.stdout);
    });
    hidden(obj, "parseJsonLines", function () {
      return splitLines(this.stdout)
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line));
    });
    hidden(obj, "parseJsonObject", function () {
      return JSON.parse(this.stdout);
    });
    return obj;
  }

  function withToString(obj, fn) {
    hidden(obj, "toString", fn);
    return obj;
  }

  function parseJson(text) {
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (_) {
      return { ok: false, value: undefined };
    }
  }

  function postToDashboard(message) {
    if (window.parent === window) {
      console.info("dockext: not inside the dockext dashboard, dropping", message);
      return;
    }
    window.parent.postMessage(message, config.dashboardOrigin);
  }

  // ----------------------------------------------------------------------------------------------- exec

  // The joined command line, as the server reports it in `cmd` (docs/design.md, "Exec semantics").
  function joinedCommand(cli, cmd, args) {
    const line = [cmd, ...args].join(" ");
    return cli === "docker" ? `docker ${line}` : line;
  }

  function execOptions(options) {
    const out = {};
    if (options && options.cwd !== undefined && options.cwd !== null) out.cwd = String(options.cwd);
    if (options && options.env && typeof options.env === "object") {
      out.env = {};
      for (const [name, value] of Object.entries(options.env)) {
        if (value !== undefined && value !== null) out.env[name] = String(value); // like Node: undefined is dropped
      }
    }
    return out;
  }

  function execNotRun(cmd, name, message) {
    const err = { killed: false, code: 126, signal: null, cmd, stdout: "", stderr: message, name, message };
    return withToString(withExecHelpers(err), function () {
      return `${this.name}: ${this.message}`;
    });
  }

  function execArgs(cmd, args) {
    if (typeof cmd !== "string") throw new TypeError("exec: cmd must be a string");
    if (args === undefined || args === null) return [];
    if (!Array.isArray(args)) throw new TypeError("exec: args must be an array of strings");
    return args.map(String);
  }

  async function runExec(cli, cmd, args, options) {
    args = execArgs(cmd, args);
    const joined = joinedCommand(cli, cmd, args);

    let response, text;
    try {
      response = await nativeFetch(`${API}/exec`, {
        method: "POST",
        headers: { "X-Dockext": "1", "Content-Type": "application/json" },
        body: JSON.stringify({ cli, cmd, args, options: execOptions(options) }),
        cache: "no-store",
        credentials: "same-origin",
      });
      text = await response.text();
    } catch (e) {
      throw execNotRun(joined, "ExecError", `dockext is unreachable: ${e && e.message}`);
    }
    const parsed = parseJson(text);
    const payload = parsed.ok && parsed.value && typeof parsed.value === "object" ? parsed.value : null;

    if (!response.ok || !payload || payload.error) {
      const error = (payload && payload.error) || {};
      const message = error.message || text || `dockext answered HTTP ${response.status}`;
      const name = error.type === "ExecRefused" || error.type === "PermissionDenied" ? error.type : "ExecError";
      throw execNotRun(joined, name, String(message));
    }

    const stdout = String(payload.stdout ?? "");
    const stderr = String(payload.stderr ?? "");
    const resultCmd = typeof payload.cmd === "string" ? payload.cmd : joined;
    if (payload.code === 0 && !payload.killed) {
      return withExecHelpers({ cmd: resultCmd, stdout, stderr });
    }
    const failure = {
      killed: Boolean(payload.killed),
      code: payload.code ?? null,
      signal: payload.signal ?? null,
      cmd: resultCmd,
      stdout,
      stderr,
    };
    throw withToString(withExecHelpers(failure), function () {
      return `Command failed: ${this.cmd}${this.stderr ? `\n${this.stderr}` : ""}`;
    });
  }

  // ---------------------------------------------------------------------------------- streaming exec

  const SIGTERM_STATUS = 143; // 128 + 15: what onClose gets once close() has ended the process
  const LOST_STATUS = -1; // the connection to dockext ended before the process did
  const CLOSE_TIMEOUT_MS = 10000; // close() gives up waiting for dockext's answer after this long

  // An exception thrown by an extension's callback is reported like an uncaught one, without breaking the stream.
  function invoke(fn, value) {
    if (typeof fn !== "function") return;
    try {
      fn(value);
    } catch (error) {
      setTimeout(() => {
        throw error;
      }, 0);
    }
  }

  function namedError(name, message) {
    const error = new Error(message);
    error.name = name;
    return error;
  }

  // onOutput receives {stdout} or {stderr}: each chunk as it comes, or with splitOutputLines each complete line
  // without its "\n"; flush() delivers what is left of a line without "\n" (stdout first, then stderr).
  function outputSink(onOutput, splitOutputLines) {
    const partial = { stdout: "", stderr: "" };
    return {
      write(key, text) {
        if (typeof onOutput !== "function") return;
        if (!splitOutputLines) {
          invoke(onOutput, { [key]: text });
          return;
        }
        if (!text.includes("\n")) {
          partial[key] += text; // a long line in many chunks: no re-splitting of what came before
          return;
        }
        const lines = text.split("\n");
        lines[0] = partial[key] + lines[0];
        partial[key] = lines.pop();
        for (const line of lines) invoke(onOutput, { [key]: line });
      },
      flush() {
        for (const key of ["stdout", "stderr"]) {
          const rest = partial[key];
          partial[key] = "";
          if (rest !== "") invoke(onOutput, { [key]: rest });
        }
      },
    };
  }

  function streamUrl() {
    const base = window.location && window.location.href ? window.location.href : "http://localhost/";
    const url = new URL(`${API}/stream`, base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  // exec(cmd, args, {stream, cwd?, env?}): one WebSocket per process; returns the ExecProcess synchronously.
  function streamExec(cli, cmd, args, options) {
    args = execArgs(cmd, args);
    const stream = options.stream;
    const sink = outputSink(stream.onOutput, Boolean(stream.splitOutputLines));
    let finished = false;
    let closing = false;
    let timer = null;
    let socket = null;

    // Output arrives as binary messages: a byte naming the stream (1 stdout, 2 stderr), then raw bytes,
    // decoded here per stream so that a character split between two messages comes out whole.
    const decoders = { stdout: new TextDecoder("utf-8"), stderr: new TextDecoder("utf-8") };

    function output(data) {
      const bytes = new Uint8Array(data);
      const key = bytes[0] === 2 ? "stderr" : "stdout";
      const text = decoders[key].decode(bytes.subarray(1), { stream: true });
      if (text !== "") sink.write(key, text);
    }

    function finish(code, error) {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const key of ["stdout", "stderr"]) {
        const rest = decoders[key].decode();
        if (rest !== "") sink.write(key, rest);
      }
      sink.flush();
      if (error) {
        if (typeof stream.onError === "function") invoke(stream.onError, error);
        else console.error("dockext:", error);
      }
      invoke(stream.onClose, code);
      if (socket && socket.readyState <= 1) socket.close(1000);
    }

    try {
      socket = new WebSocket(streamUrl());
    } catch (e) {
      setTimeout(() => finish(LOST_STATUS, new Error(`dockext is unreachable: ${e && e.message}`)), 0);
      return Object.freeze({ close() {} });
    }
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      if (closing) finish(SIGTERM_STATUS); // closed before it started: nothing ran
      else socket.send(JSON.stringify({ cli, cmd, args, options: execOptions(options) }));
    };
    socket.onmessage = (event) => {
      if (finished) return;
      if (typeof event.data !== "string") {
        output(event.data);
        return;
      }
      const parsed = parseJson(event.data);
      const message = parsed.ok && parsed.value && typeof parsed.value === "object" ? parsed.value : null;
      if (!message) return;
      if ("exit" in message) finish(typeof message.exit === "number" ? message.exit : LOST_STATUS);
      else if ("error" in message) {
        const name = message.type === "ExecRefused" || message.type === "PermissionDenied" ? message.type : "ExecError";
        finish(typeof message.code === "number" ? message.code : 126, namedError(name, String(message.error)));
      }
    };
    socket.onclose = (event) => {
      if (closing) finish(SIGTERM_STATUS);
      else finish(LOST_STATUS, new Error(`dockext connection lost (WebSocket closed, code ${event.code})`));
    };
    return Object.freeze({
      close() {
        if (finished || closing) return;
        closing = true;
        if (socket.readyState === 1) socket.send(JSON.stringify({ close: true }));
        timer = setTimeout(() => finish(SIGTERM_STATUS), CLOSE_TIMEOUT_MS);
      },
    });
  }

  function makeExec(cli) {
    return function exec(cmd, args, options) {
      if (options && options.stream) return streamExec(cli, cmd, args, options);
      return runExec(cli, cmd, args, options);
    };
  }

  // v0 spawn*(cmd, args, callback(data, error)): callback({stdout}) / callback({stderr}) per chunk, then
  // callback({close: true, code}) once; an error first calls callback({error: message}, error).
  function makeSpawn(cli) {
    return function spawn(cmd, args, callback) {
      const cb = typeof callback === "function" ? callback : () => {};
      streamExec(cli, cmd, args, {
        stream: {
          onOutput: (data) => cb(data, null),
          onError: (error) => cb({ error: error.message }, error),
          onClose: (code) => cb({ close: true, code }, null),
        },
      });
    };
  }

  // ---------------------------------------------------------------------------------------- HttpService

  function checkServiceUrl(url) {
    const bad = (why) => new TypeError(`vm.service: url must be a path on the backend such as "/hello" (${why})`);
    if (typeof url !== "string") throw bad("not a string");
    if (!url.startsWith("/") || url.startsWith("//") || url.startsWith("/\\")) throw bad(`got ${JSON.stringify(url)}`);
    if (/[\u0000-\u001f\u007f]/.test(url)) throw bad("control characters");
    const path = url.split(/[?#]/, 1)[0];
    // The browser would resolve "." and ".." segments (also "%2e", also across "\"), leaving the backend.
    if (path.split(/[/\\]/).some((seg) => /^(\.|%2e){1,2}$/i.test(seg))) throw bad("dot segments");
  }

  function serviceError(name, message, statusCode) {
    return withToString({ name, message, statusCode }, function () {
      return `${this.name}: ${this.message}`;
    });
  }

  function isRawBody(data) {
    return (
      (typeof Blob !== "undefined" && data instanceof Blob) ||
      (typeof FormData !== "undefined" && data instanceof FormData) ||
      (typeof URLSearchParams !== "undefined" && data instanceof URLSearchParams) ||
      data instanceof ArrayBuffer ||
      ArrayBuffer.isView(data)
    );
  }

  async function serviceRequest(method, url, data, headers) {
    checkServiceUrl(url);
    const requestHeaders = new Headers(headers || {});
    requestHeaders.set("X-Dockext", "1");
    let body;
    if (data !== undefined && data !== null && method !== "GET" && method !== "HEAD") {
      if (typeof data === "string") {
        // Sent as-is; labelled JSON when it is JSON (extensions often pass JSON.stringify(...) themselves).
        body = data;
        if (!requestHeaders.has("Content-Type")) {
          requestHeaders.set("Content-Type", parseJson(data).ok ? "application/json" : "text/plain;charset=UTF-8");
        }
      } else if (isRawBody(data)) {
        body = data;
      } else {
        body = JSON.stringify(data);
        if (!requestHeaders.has("Content-Type")) requestHeaders.set("Content-Type", "application/json");
      }
    }

    let response, text;
    try {
      response = await fetchRetryingReads(`${API}/vm${url}`, {
        method,
        headers: requestHeaders,
        body,
        cache: "no-store",
        credentials: "same-origin",
      });
      text = await response.text();
    } catch (e) {
      throw new Error(`dockext is unreachable: ${e && e.message}`);
    }

    if (response.headers.get("X-Dockext-Proxy-Error") === "1") {
      const parsed = parseJson(text);
      const error = parsed.ok && parsed.value && parsed.value.error;
      const message = (error && error.message) || text || "the extension backend is not reachable";
      throw serviceError("BackendError", String(message), response.status);
    }
    if (!response.ok) throw serviceError("ServiceError", text, response.status);
    if (text === "") return text;
    const parsed = parseJson(text);
    return parsed.ok ? parsed.value : text;
  }

  function makeService(available) {
    const call = available
      ? serviceRequest
      : () => Promise.reject(new Error("this extension has no backend service (metadata vm.exposes.socket)"));
    return {
      get: (url) => call("GET", url),
      post: (url, data) => call("POST", url, data),
      put: (url, data) => call("PUT", url, data),
      patch: (url, data) => call("PATCH", url, data),
      delete: (url) => call("DELETE", url),
      head: (url) => call("HEAD", url),
      request: (requestConfig) => {
        const c = requestConfig || {};
        return call(String(c.method || "GET").toUpperCase(), c.url, c.data, c.headers);
      },
    };
  }

  // ------------------------------------------------------------------------------------- desktop UI, host

  function toast(level) {
    return function (msg) {
      postToDashboard({ dockext: "toast", level, message: String(msg) });
    };
  }

  function openExternal(url) {
    let parsed;
    try {
      parsed = new URL(String(url));
    } catch (_) {
      throw new TypeError(`openExternal: not an absolute URL: ${url}`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(`openExternal: only http and https URLs can be opened, got ${parsed.protocol}`);
    }
    postToDashboard({ dockext: "openExternal", url: parsed.href });
  }

  // Requests to the dashboard: {dockext: type, id, ...fields} to window.parent, answered by
  // {dockext: "reply", id, ok, value | error: {message}} from window.parent with the dashboard's origin only.
  const pending = new Map();
  let requestCount = 0;

  function requestId() {
    const random =
      typeof crypto !== "undefined" && typeof crypto.randomUUID === "function"
        ? crypto.randomUUID()
        : Math.random().toString(36).slice(2);
    requestCount += 1;
    return `${requestCount}-${random}`;
  }

  function askDashboard(type, fields) {
    return new Promise((resolve, reject) => {
      if (window.parent === window || !window.parent) {
        reject(new Error(`${type}: not inside the dockext dashboard`));
        return;
      }
      const id = requestId();
      pending.set(id, { resolve, reject });
      try {
        window.parent.postMessage({ ...fields, dockext: type, id }, config.dashboardOrigin);
      } catch (error) {
        pending.delete(id);
        reject(error);
      }
    });
  }

  function onReply(event) {
    if (event.source !== window.parent || event.origin !== config.dashboardOrigin) return;
    const data = event.data;
    if (!data || typeof data !== "object" || data.dockext !== "reply" || typeof data.id !== "string") return;
    const waiter = pending.get(data.id);
    if (!waiter) return;
    pending.delete(data.id);
    if (data.ok === true) waiter.resolve(data.value);
    else waiter.reject(new Error(String((data.error && data.error.message) || "the dashboard refused the request")));
  }

  if (typeof window.addEventListener === "function") window.addEventListener("message", onReply);

  // navigate.<route>(...args): resolves undefined once the dashboard went there, rejects an Error otherwise
  // (e.g. no such container). Arguments beyond the route's own are dropped; missing ones are sent as null.
  function navigation(route, arity) {
    return function (...given) {
      const args = Array.from({ length: arity }, (_, i) =>
        given[i] === undefined || given[i] === null ? null : String(given[i]),
      );
      return askDashboard("navigate", { route, args }).then(() => undefined);
    };
  }

  const navigate = Object.freeze({
    viewContainers: navigation("viewContainers", 0),
    viewContainer: navigation("viewContainer", 1),
    viewContainerLogs: navigation("viewContainerLogs", 1),
    viewContainerInspect: navigation("viewContainerInspect", 1),
    viewContainerTerminal: navigation("viewContainerTerminal", 1),
    viewContainerStats: navigation("viewContainerStats", 1),
    viewImages: navigation("viewImages", 0),
    viewImage: navigation("viewImage", 2),
    viewVolumes: navigation("viewVolumes", 0),
    viewVolume: navigation("viewVolume", 1),
    // Dev Environments are gone from Docker Desktop (removed from the 0.4 typings): a no-op for old extensions.
    viewDevEnvironments: () => Promise.resolve(),
  });

  // showOpenDialog(properties): Electron's open-dialog options (properties, filters, defaultPath, ...);
  // resolves {canceled, filePaths} (+ bookmarks when the dashboard gives some).
  async function showOpenDialog(properties) {
    let options;
    try {
      options = JSON.parse(JSON.stringify(properties ?? {}));
    } catch (error) {
      throw new TypeError(`showOpenDialog: the options must be plain data (${error.message})`);
    }
    const value = await askDashboard("dialog", { options });
    const result = {
      canceled: Boolean(value && value.canceled),
      filePaths: value && Array.isArray(value.filePaths) ? value.filePaths.map(String) : [],
    };
    if (value && Array.isArray(value.bookmarks)) result.bookmarks = value.bookmarks.map(String);
    return result;
  }

  // ------------------------------------------------------------------------------------------ engine reads

  // docker.listContainers / listImages(options): GET {api}/docker/<what>?options=<JSON>; the Engine API's JSON.
  async function engineList(what, options) {
    const query = encodeURIComponent(JSON.stringify(options ?? {}));
    let response, text;
    try {
      response = await fetchRetryingReads(`${API}/docker/${what}?options=${query}`, {
        headers: { "X-Dockext": "1" },
        cache: "no-store",
        credentials: "same-origin",
      });
      text = await response.text();
    } catch (e) {
      throw new Error(`dockext is unreachable: ${e && e.message}`);
    }
    const parsed = parseJson(text);
    if (!response.ok) {
      const error = parsed.ok && parsed.value && parsed.value.error;
      const failure = new Error(String((error && error.message) || text || `dockext answered HTTP ${response.status}`));
      failure.statusCode = response.status;
      throw failure;
    }
    if (!parsed.ok) throw new Error(`docker.list${what === "images" ? "Images" : "Containers"}: the answer is not JSON`);
    return parsed.value;
  }

  const listContainers = (options) => engineList("containers", options);
  const listImages = (options) => engineList("images", options);

  // ------------------------------------------------------------------------------------------- ddClient

  const dockerExec = makeExec("docker");
  const vmExec = makeExec("vm");
  const hostExec = makeExec("host");

  const extensionApi = { image: extension.image };
  if (extension.hasVm) {
    const vm = { cli: Object.freeze({ exec: vmExec }) };
    if (extension.hasService) vm.service = Object.freeze(makeService(true));
    extensionApi.vm = Object.freeze(vm);
  }
  if (extension.hasHost) extensionApi.host = Object.freeze({ cli: Object.freeze({ exec: hostExec }) });

  const ddClient = {
    // v1
    extension: Object.freeze(extensionApi),
    docker: Object.freeze({
      cli: Object.freeze({ exec: dockerExec }),
      listContainers,
      listImages,
    }),
    desktopUI: Object.freeze({
      toast: Object.freeze({ success: toast("success"), warning: toast("warning"), error: toast("error") }),
      dialog: Object.freeze({ showOpenDialog }),
      navigate,
    }),
    host: Object.freeze({
      platform: hostInfo.platform,
      arch: hostInfo.arch,
      hostname: hostInfo.hostname,
      openExternal,
    }),

    // v0 (deprecated, still used by older extensions)
    backend: undefined,
    toastSuccess: toast("success"),
    toastWarning: toast("warning"),
    toastError: toast("error"),
    listContainers,
    listImages,
    execDockerCmd: (cmd, ...args) => dockerExec(cmd, args),
    spawnDockerCmd: makeSpawn("docker"),
    execHostCmd: (cmdline) => hostExec(cmdline, []),
    spawnHostCmd: makeSpawn("host"),
    navigateToContainers: navigate.viewContainers,
    navigateToContainer: navigate.viewContainer,
    navigateToContainerLogs: navigate.viewContainerLogs,
    navigateToContainerInspect: navigate.viewContainerInspect,
    navigateToContainerStats: navigate.viewContainerStats,
    navigateToImages: navigate.viewImages,
    navigateToImage: navigate.viewImage,
    navigateToVolumes: navigate.viewVolumes,
    navigateToVolume: navigate.viewVolume,
    navigateToDevEnvironments: navigate.viewDevEnvironments,
    openExternal,
  };

  if (extension.hasVm) {
    ddClient.backend = Object.freeze({
      ...makeService(Boolean(extension.hasService)),
      execInVMExtension: (cmdline) => vmExec(cmdline, []),
      execInContainer: (container, cmdline) => dockerExec("exec", [container, cmdline]),
      spawnInVMExtension: makeSpawn("vm"),
    });
  }

  // `dockext dev debug EXT`: every call, and how it ended, on the console (Docker Desktop opens DevTools instead)
  function traced(obj, path) {
    const out = {};
    for (const [key, value] of Object.entries(obj)) {
      const name = `${path}.${key}`;
      if (typeof value === "function") {
        out[key] = function (...args) {
          console.debug(`[ddClient] ${name}`, ...args);
          let result;
          try {
            result = value.apply(this, args);
          } catch (error) {
            console.debug(`[ddClient] ${name} threw`, error);
            throw error;
          }
          if (result && typeof result.then === "function") {
            result.then(
              (v) => console.debug(`[ddClient] ${name} resolved`, v),
              (e) => console.debug(`[ddClient] ${name} rejected`, e),
            );
          }
          return result;
        };
      } else if (value && typeof value === "object") {
        out[key] = Object.freeze(traced(value, name));
      } else {
        out[key] = value;
      }
    }
    return out;
  }

  window.ddClient = Object.freeze(config.debug ? traced(ddClient, "ddClient") : ddClient);
  if (config.debug) console.debug("[ddClient] debug mode (dockext dev debug): calls are logged here");
})();
