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
 *  - features dockext does not have yet (streaming exec, dialogs, navigation, listContainers/listImages)
 *      an Error "<feature> is not supported yet by dockext" (rejected, or passed to onError / the v0 callback)
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

  // ---------------------------------------------------------------------------------------------- helpers

  function notSupported(feature) {
    return new Error(`${feature} is not supported yet by dockext`);
  }

  function unsupportedAsync(feature) {
    return function () {
      return Promise.reject(notSupported(feature));
    };
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

  async function runExec(cli, cmd, args, options) {
    if (typeof cmd !== "string") throw new TypeError("exec: cmd must be a string");
    if (args === undefined || args === null) args = [];
    if (!Array.isArray(args)) throw new TypeError("exec: args must be an array of strings");
    args = args.map(String);
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
      throw execNotRun(joined, error.type === "ExecRefused" ? "ExecRefused" : "ExecError", String(message));
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

  // The streaming overload returns an ExecProcess synchronously; until dockext streams, it reports the
  // failure through onError (asynchronously, once the caller holds the returned object).
  function unsupportedStream(stream) {
    const error = new Error("streaming exec is not supported yet by dockext");
    setTimeout(() => {
      if (stream && typeof stream.onError === "function") stream.onError(error);
      else console.error(error);
    }, 0);
    return Object.freeze({ close() {} });
  }

  function makeExec(cli) {
    return function exec(cmd, args, options) {
      if (options && options.stream) return unsupportedStream(options.stream);
      return runExec(cli, cmd, args, options);
    };
  }

  // v0 spawn*(cmd, args, callback(data, error)): not supported yet, reported through the callback.
  function unsupportedSpawn(name) {
    return function (_cmd, _args, callback) {
      const error = notSupported(name);
      setTimeout(() => {
        if (typeof callback === "function") callback({}, error);
        else console.error(error);
      }, 0);
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
      response = await nativeFetch(`${API}/vm${url}`, {
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

  const navigate = Object.freeze({
    viewContainers: unsupportedAsync("navigate.viewContainers"),
    viewContainer: unsupportedAsync("navigate.viewContainer"),
    viewContainerLogs: unsupportedAsync("navigate.viewContainerLogs"),
    viewContainerInspect: unsupportedAsync("navigate.viewContainerInspect"),
    viewContainerTerminal: unsupportedAsync("navigate.viewContainerTerminal"),
    viewContainerStats: unsupportedAsync("navigate.viewContainerStats"),
    viewImages: unsupportedAsync("navigate.viewImages"),
    viewImage: unsupportedAsync("navigate.viewImage"),
    viewVolumes: unsupportedAsync("navigate.viewVolumes"),
    viewVolume: unsupportedAsync("navigate.viewVolume"),
    // Dev Environments are gone from Docker Desktop (removed from the 0.4 typings): a no-op for old extensions.
    viewDevEnvironments: () => Promise.resolve(),
  });

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
      listContainers: unsupportedAsync("docker.listContainers"),
      listImages: unsupportedAsync("docker.listImages"),
    }),
    desktopUI: Object.freeze({
      toast: Object.freeze({ success: toast("success"), warning: toast("warning"), error: toast("error") }),
      dialog: Object.freeze({ showOpenDialog: unsupportedAsync("dialog.showOpenDialog") }),
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
    listContainers: unsupportedAsync("listContainers"),
    listImages: unsupportedAsync("listImages"),
    execDockerCmd: (cmd, ...args) => dockerExec(cmd, args),
    spawnDockerCmd: unsupportedSpawn("spawnDockerCmd (streaming exec)"),
    execHostCmd: (cmdline) => hostExec(cmdline, []),
    spawnHostCmd: unsupportedSpawn("spawnHostCmd (streaming exec)"),
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
      spawnInVMExtension: unsupportedSpawn("spawnInVMExtension (streaming exec)"),
    });
  }

  window.ddClient = Object.freeze(ddClient);
})();
