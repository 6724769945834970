// Unit tests for the ddClient SDK (src/dockext/static/sdk/ddclient.js + themes.js).
// Run with: node --test tests/js
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const SDK_DIR = path.join(__dirname, "..", "..", "src", "dockext", "static", "sdk");
const THEMES = fs.readFileSync(path.join(SDK_DIR, "themes.js"), "utf8");
const DDCLIENT = fs.readFileSync(path.join(SDK_DIR, "ddclient.js"), "utf8");
const API = "/i/0123456789abcdef/__dockext__";
const DASHBOARD = "http://localhost:8765";

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

const PAGE = "http://acme-ext-abc123.localhost:8765/i/0123456789abcdef/index.html";

// A browser WebSocket as the SDK uses it; the test plays the server with open(), message(), drop().
class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = undefined;
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("send while not open");
    this.sent.push(JSON.parse(data));
  }
  close(code) {
    if (this.closedWith === undefined) this.closedWith = code;
    if (this.readyState < 2) this.readyState = 2;
  }
  open() {
    this.readyState = 1;
    this.onopen({});
  }
  // {stdout: text} / {stderr: text} go out as dockext sends output (binary: a stream byte, then UTF-8);
  // anything else as a JSON text message
  message(body) {
    if (typeof body.stdout === "string") this.bytes(1, new TextEncoder().encode(body.stdout));
    else if (typeof body.stderr === "string") this.bytes(2, new TextEncoder().encode(body.stderr));
    else this.onmessage({ data: JSON.stringify(body) });
  }
  bytes(stream, payload) {
    const data = new Uint8Array(payload.length + 1);
    data[0] = stream;
    data.set(payload, 1);
    this.onmessage({ data: data.buffer });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose({ code });
  }
}

// Loads the SDK the way the server serves it (config + themes.js + ddclient.js, one classic script) into a
// fresh context whose global object is `window`. `respond(url, init)` answers the SDK's fetches; `sockets`
// are the WebSockets it opened; `window.deliver(data, {source, origin})` dispatches a message event to it.
function load({ extension = {}, respond = () => json({}), timers = setTimeout, web = false } = {}) {
  const calls = [];
  const nativeSources = [];
  class NativeEventSource {
    constructor(url) {
      this.url = url;
      nativeSources.push(this);
    }
  }
  const posted = [];
  const listeners = [];
  const sockets = [];
  class WebSocket extends FakeWebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  const sandbox = {
    console,
    setTimeout: timers,
    clearTimeout,
    URL,
    Headers,
    Blob,
    FormData,
    URLSearchParams,
    Response,
    Request,
    TextDecoder,
    WebSocket,
    EventTarget,
    Event,
    MessageEvent,
    AbortController,
    EventSource: NativeEventSource,
    location: { href: PAGE },
    addEventListener: (type, fn) => listeners.push({ type, fn }),
    parent: { postMessage: (message, origin) => posted.push({ message, origin }) },
    fetch: async (url, init) => {
      calls.push({ url, init });
      return respond(url, init);
    },
  };
  sandbox.window = sandbox;
  sandbox.deliver = (data, { source = sandbox.parent, origin = DASHBOARD } = {}) => {
    for (const l of listeners) if (l.type === "message") l.fn({ data, source, origin });
  };
  vm.createContext(sandbox);
  const cfg = {
    api: API,
    dashboardOrigin: DASHBOARD,
    extension: { id: "acme/ext", image: "acme/ext:1.0", hasVm: true, hasService: true, hasHost: true, ...extension },
    host: { platform: "linux", arch: "x64", hostname: "box" },
    web,
  };
  vm.runInContext(`window.__dockextConfig = ${JSON.stringify(cfg)};\n${THEMES}\n${DDCLIENT}`, sandbox);
  return { ddClient: sandbox.ddClient, window: sandbox, calls, posted, sockets, nativeSources };
}

// Values made inside the SDK's context have that realm's prototypes: compare their JSON form.
const plain = (value) => JSON.parse(JSON.stringify(value));

function execAnswer(fields) {
  return () => json({ cmd: "docker ps", code: 0, stdout: "", stderr: "", killed: false, signal: null, ...fields });
}

test("defines ddClient and the MUI theme globals synchronously", () => {
  const { ddClient, window } = load();
  assert.ok(ddClient);
  assert.ok(Object.isFrozen(ddClient));
  assert.ok(Object.isFrozen(ddClient.extension));
  assert.equal(ddClient.extension.image, "acme/ext:1.0");
  assert.ok(window.__ddMuiV5Themes.light.palette && window.__ddMuiV5Themes.dark.palette);
  assert.equal(window.__ddMuiV6Themes, window.__ddMuiV5Themes);
  assert.deepEqual(
    { platform: ddClient.host.platform, arch: ddClient.host.arch, hostname: ddClient.host.hostname },
    { platform: "linux", arch: "x64", hostname: "box" },
  );
});

test("exposes every v1 and v0 member", () => {
  const { ddClient } = load();
  const fns = [
    "docker.cli.exec", "docker.listContainers", "docker.listImages",
    "extension.vm.cli.exec", "extension.host.cli.exec",
    "extension.vm.service.get", "extension.vm.service.post", "extension.vm.service.put",
    "extension.vm.service.patch", "extension.vm.service.delete", "extension.vm.service.head",
    "extension.vm.service.request",
    "desktopUI.toast.success", "desktopUI.toast.warning", "desktopUI.toast.error",
    "desktopUI.dialog.showOpenDialog",
    "desktopUI.navigate.viewContainers", "desktopUI.navigate.viewContainer", "desktopUI.navigate.viewContainerLogs",
    "desktopUI.navigate.viewContainerInspect", "desktopUI.navigate.viewContainerTerminal",
    "desktopUI.navigate.viewContainerStats", "desktopUI.navigate.viewImages", "desktopUI.navigate.viewImage",
    "desktopUI.navigate.viewVolumes", "desktopUI.navigate.viewVolume",
    "host.openExternal",
    "backend.get", "backend.post", "backend.put", "backend.patch", "backend.delete", "backend.head",
    "backend.request", "backend.execInVMExtension", "backend.execInContainer", "backend.spawnInVMExtension",
    "toastSuccess", "toastWarning", "toastError", "listContainers", "listImages", "execHostCmd", "spawnHostCmd",
    "execDockerCmd", "spawnDockerCmd", "navigateToContainers", "navigateToContainer", "navigateToContainerLogs",
    "navigateToContainerInspect", "navigateToContainerStats", "navigateToImages", "navigateToImage",
    "navigateToVolumes", "navigateToVolume", "openExternal",
  ];
  for (const name of fns) {
    const value = name.split(".").reduce((o, k) => o && o[k], ddClient);
    assert.equal(typeof value, "function", name);
  }
});

test("extension.vm, vm.service, host and backend follow the config flags", () => {
  let { ddClient } = load({ extension: { hasVm: false, hasService: false, hasHost: false } });
  assert.equal(ddClient.extension.vm, undefined);
  assert.equal(ddClient.extension.host, undefined);
  assert.equal(ddClient.backend, undefined);
  ({ ddClient } = load({ extension: { hasVm: true, hasService: false, hasHost: false } }));
  assert.equal(typeof ddClient.extension.vm.cli.exec, "function");
  assert.equal(ddClient.extension.vm.service, undefined);
  assert.equal(typeof ddClient.backend.execInVMExtension, "function");
});

test("vm.service.get resolves parsed JSON, or the text", async () => {
  const { ddClient, calls } = load({
    respond: (url) =>
      url.endsWith("/json") ? json([{ name: "a" }]) : url.endsWith("/number") ? new Response("42") : new Response("hi there"),
  });
  assert.deepEqual(plain(await ddClient.extension.vm.service.get("/json")), [{ name: "a" }]);
  assert.equal(await ddClient.extension.vm.service.get("/number"), 42);
  assert.equal(await ddClient.extension.vm.service.get("/text?x=1"), "hi there");
  assert.equal(calls[0].url, `${API}/vm/json`);
  assert.equal(calls[2].url, `${API}/vm/text?x=1`);
  assert.equal(calls[0].init.method, "GET");
  assert.equal(calls[0].init.headers.get("X-Dockext"), "1");
  assert.equal(calls[0].init.body, undefined);
});

test("vm.service sends objects as JSON and strings as-is", async () => {
  const { ddClient, calls } = load({ respond: () => new Response(null, { status: 204 }) });
  assert.equal(await ddClient.extension.vm.service.post("/a", { x: 1 }), "");
  await ddClient.extension.vm.service.put("/b", "plain text");
  await ddClient.extension.vm.service.patch("/c", '{"y":2}');
  await ddClient.extension.vm.service.request({
    url: "/d", method: "delete", headers: { "X-Custom": "v", "X-Dockext": "0" }, data: null,
  });
  assert.equal(calls[0].init.body, '{"x":1}');
  assert.equal(calls[0].init.headers.get("Content-Type"), "application/json");
  assert.equal(calls[1].init.method, "PUT");
  assert.equal(calls[1].init.body, "plain text");
  assert.match(calls[1].init.headers.get("Content-Type"), /^text\/plain/);
  assert.equal(calls[2].init.body, '{"y":2}');
  assert.equal(calls[2].init.headers.get("Content-Type"), "application/json");
  assert.equal(calls[3].init.method, "DELETE");
  assert.equal(calls[3].init.headers.get("X-Custom"), "v");
  assert.equal(calls[3].init.headers.get("X-Dockext"), "1");
});

test("vm.service refuses anything but a backend path, without a request", async () => {
  const { ddClient, calls } = load();
  const bad = ["http://x/y", "//host/x", "/\\host", "hello", "", "/../exec", "/a/%2e%2e/exec", "/a\\..\\b", "/.\t./x", 42];
  for (const url of bad) {
    await assert.rejects(ddClient.extension.vm.service.get(url), (e) => e.name === "TypeError", String(url));
  }
  await assert.rejects(ddClient.extension.vm.service.request({ method: "GET", url: "https://evil/" }));
  assert.equal(calls.length, 0);
});

test("vm.service non-2xx rejects {name: 'ServiceError', message: body, statusCode}", async () => {
  const { ddClient } = load({ respond: () => new Response('"token expired"', { status: 401 }) });
  const err = await ddClient.extension.vm.service.get("/x").catch((e) => e);
  assert.deepEqual({ ...err }, { name: "ServiceError", message: '"token expired"', statusCode: 401 });
  assert.equal(String(err), 'ServiceError: "token expired"');
});

test("an unreachable backend rejects {name: 'BackendError', message, statusCode: 502}", async () => {
  const { ddClient } = load({
    respond: () =>
      json({ error: { type: "BackendNotReady", message: "the backend is not ready yet" } }, 502, {
        "X-Dockext-Proxy-Error": "1",
      }),
  });
  const err = await ddClient.backend.get("/x").catch((e) => e);
  assert.deepEqual({ ...err }, { name: "BackendError", message: "the backend is not ready yet", statusCode: 502 });
});

test("an unreachable dockext rejects an Error", async () => {
  const { ddClient } = load({
    respond: () => {
      throw new TypeError("Failed to fetch");
    },
  });
  const err = await ddClient.extension.vm.service.get("/x").catch((e) => e);
  assert.match(err.message, /dockext is unreachable: Failed to fetch/);
});

test("a GET that fails in the network is sent once more; other methods and a second failure are not", async () => {
  let failures = 1;
  const { ddClient, calls } = load({
    timers: (fn) => setTimeout(fn, 0),
    respond: () => {
      if (failures-- > 0) throw new TypeError("Failed to fetch");
      return json({ ok: 1 });
    },
  });
  assert.deepEqual(plain(await ddClient.extension.vm.service.get("/x")), { ok: 1 });
  assert.equal(calls.length, 2);
  failures = 1;
  const post = await ddClient.extension.vm.service.post("/x", {}).catch((e) => e);
  assert.match(post.message, /dockext is unreachable: Failed to fetch/);
  assert.equal(calls.length, 3);
  failures = 2;
  const twice = await ddClient.docker.listContainers().catch((e) => e);
  assert.match(twice.message, /dockext is unreachable: Failed to fetch/);
  assert.equal(calls.length, 5);
});

test("docker.cli.exec posts the call and resolves {cmd, stdout, stderr} with helpers", async () => {
  const { ddClient, calls } = load({
    respond: execAnswer({ cmd: "docker ps --format {{json .}}", stdout: '{"a":1}\n\n{"b":2}\n', stderr: "warn" }),
  });
  const result = await ddClient.docker.cli.exec("ps", ["--format", '"{{json .}}"'], { cwd: "/tmp", env: { A: 1, B: undefined } });
  assert.equal(calls[0].url, `${API}/exec`);
  assert.equal(calls[0].init.method, "POST");
  assert.equal(calls[0].init.headers["X-Dockext"], "1");
  assert.deepEqual(JSON.parse(calls[0].init.body), {
    cli: "docker", cmd: "ps", args: ["--format", '"{{json .}}"'], options: { cwd: "/tmp", env: { A: "1" } },
  });
  assert.deepEqual({ ...result }, { cmd: "docker ps --format {{json .}}", stdout: '{"a":1}\n\n{"b":2}\n', stderr: "warn" });
  assert.equal("code" in result, false);
  assert.deepEqual(plain(result.lines()), ['{"a":1}', "", '{"b":2}']);
  assert.deepEqual(plain(result.parseJsonLines()), [{ a: 1 }, { b: 2 }]);
  assert.throws(() => result.parseJsonObject());
});

test("lines() drops exactly one trailing empty line", async () => {
  const run = async (stdout) => load({ respond: execAnswer({ stdout }) }).ddClient.docker.cli.exec("x", []);
  assert.deepEqual(plain((await run("a\nb\n\n")).lines()), ["a", "b", ""]);
  assert.deepEqual(plain((await run("a")).lines()), ["a"]);
  assert.deepEqual(plain((await run("")).lines()), []);
  assert.deepEqual(plain((await run('{"k":[1]}\n')).parseJsonObject()), { k: [1] });
});

test("a non-zero exit rejects {killed, code, signal, cmd, stdout, stderr}", async () => {
  const { ddClient, calls } = load({
    respond: execAnswer({ cmd: "ls /nope", code: 2, stdout: "x\n", stderr: "ls: /nope: No such file\n" }),
  });
  const err = await ddClient.extension.vm.cli.exec("ls", ["/nope"]).catch((e) => e);
  assert.equal(JSON.parse(calls[0].init.body).cli, "vm");
  assert.deepEqual({ ...err }, {
    killed: false, code: 2, signal: null, cmd: "ls /nope", stdout: "x\n", stderr: "ls: /nope: No such file\n",
  });
  assert.deepEqual(plain(err.lines()), ["x"]);
  assert.match(String(err), /^Command failed: ls \/nope/);
});

test("a killed command rejects with killed and signal", async () => {
  const { ddClient } = load({ respond: execAnswer({ cmd: "sleep 99", code: null, killed: true, signal: "SIGTERM" }) });
  const err = await ddClient.extension.host.cli.exec("sleep", ["99"]).catch((e) => e);
  assert.equal(err.killed, true);
  assert.equal(err.signal, "SIGTERM");
  assert.equal(err.code, null);
});

test("a refused exec rejects an exec-shaped error with the reason in message and stderr", async () => {
  const { ddClient } = load({
    respond: () => json({ error: { type: "ExecRefused", message: "docker options before the subcommand are not allowed" } }, 403),
  });
  const err = await ddClient.docker.cli.exec("-H", ["tcp://x", "ps"]).catch((e) => e);
  assert.deepEqual({ ...err }, {
    killed: false, code: 126, signal: null, cmd: "docker -H tcp://x ps", stdout: "",
    stderr: "docker options before the subcommand are not allowed",
    name: "ExecRefused", message: "docker options before the subcommand are not allowed",
  });
  assert.deepEqual(plain(err.lines()), []);
});

test("v0 exec members map onto the three CLIs", async () => {
  const { ddClient, calls } = load({ respond: execAnswer({}) });
  await ddClient.execDockerCmd("run", "--rm", "alpine", "echo", "hi");
  await ddClient.execHostCmd("kubectl version --client");
  await ddClient.backend.execInVMExtension("ls -l /");
  await ddClient.backend.execInContainer("my-ctr", "cat /etc/hostname");
  const bodies = calls.map((c) => JSON.parse(c.init.body));
  assert.deepEqual(bodies.map((b) => [b.cli, b.cmd, b.args]), [
    ["docker", "run", ["--rm", "alpine", "echo", "hi"]],
    ["host", "kubectl version --client", []],
    ["vm", "ls -l /", []],
    ["docker", "exec", ["my-ctr", "cat /etc/hostname"]],
  ]);
});

test("toasts are posted to the dashboard origin", () => {
  const { ddClient, posted } = load();
  ddClient.desktopUI.toast.success("Saved");
  ddClient.toastError({ toString: () => "boom" });
  ddClient.desktopUI.toast.warning(42);
  assert.deepEqual(plain(posted), [
    { message: { dockext: "toast", level: "success", message: "Saved" }, origin: DASHBOARD },
    { message: { dockext: "toast", level: "error", message: "boom" }, origin: DASHBOARD },
    { message: { dockext: "toast", level: "warning", message: "42" }, origin: DASHBOARD },
  ]);
});

test("openExternal accepts http(s) only", () => {
  const { ddClient, posted } = load();
  ddClient.host.openExternal("https://docs.docker.com/x?y=1");
  ddClient.openExternal("http://example.com");
  for (const url of ["javascript:alert(1)", "file:///etc/passwd", "/relative", "data:text/html,x"]) {
    assert.throws(() => ddClient.host.openExternal(url), (e) => e.name === "TypeError", url);
  }
  assert.deepEqual(plain(posted.map((p) => p.message)), [
    { dockext: "openExternal", url: "https://docs.docker.com/x?y=1" },
    { dockext: "openExternal", url: "http://example.com/" },
  ]);
});

// ------------------------------------------------------------------------------------------ streaming exec

// Records every callback of a stream, in order.
function recorder(extra = {}) {
  const events = [];
  return {
    events,
    stream: {
      onOutput: (data) => events.push(["output", plain(data)]),
      onError: (error) => events.push(["error", error.name, error.message]),
      onClose: (code) => events.push(["close", code]),
      ...extra,
    },
  };
}

test("the streaming overload returns an ExecProcess at once and sends the argv verbatim", () => {
  const { ddClient, sockets, calls } = load();
  const { events, stream } = recorder();
  const proc = ddClient.docker.cli.exec("events", ["--format", "{{json .}}", "--filter", "name=a b"], {
    stream, cwd: "/tmp", env: { A: 1, B: undefined },
  });
  assert.equal(typeof proc.close, "function");
  assert.equal(typeof proc.then, "undefined");
  assert.ok(Object.isFrozen(proc));
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, `ws://acme-ext-abc123.localhost:8765${API}/stream`);
  assert.deepEqual(events, []);
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, [{
    cli: "docker", cmd: "events", args: ["--format", "{{json .}}", "--filter", "name=a b"],
    options: { cwd: "/tmp", env: { A: "1" } },
  }]);
  assert.equal(calls.length, 0); // no HTTP exec
});

test("chunks reach onOutput one key at a time, in order, then onClose(exit) once", () => {
  const { ddClient, sockets } = load();
  const { events, stream } = recorder();
  ddClient.extension.host.cli.exec("chatty.sh", ["3"], { stream });
  const ws = sockets[0];
  ws.open();
  assert.equal(ws.sent[0].cli, "host");
  ws.message({ stdout: "line 1\nli" });
  ws.message({ stderr: "oops\n" });
  ws.message({ stdout: "ne 2\n" });
  assert.deepEqual(events, [
    ["output", { stdout: "line 1\nli" }], ["output", { stderr: "oops\n" }], ["output", { stdout: "ne 2\n" }],
  ]);
  ws.message({ exit: 3, signal: null });
  ws.drop(1000);
  ws.message({ stdout: "late" });
  assert.deepEqual(events.slice(3), [["close", 3]]);
  assert.equal(ws.closedWith, 1000);
});

test("output is decoded per stream, so a character split between messages comes out whole", () => {
  const { ddClient, sockets } = load();
  const { events, stream } = recorder();
  ddClient.docker.cli.exec("logs", ["x"], { stream });
  const ws = sockets[0];
  assert.equal(ws.binaryType, "arraybuffer");
  ws.open();
  const e = new TextEncoder().encode("é€"); // c3 a9 e2 82 ac
  ws.bytes(1, new Uint8Array([0x63, 0x61, 0x66, e[0]])); // "caf" and the first byte of "é"
  ws.bytes(2, new Uint8Array([e[2]])); // the start of "€" on stderr
  ws.bytes(1, new Uint8Array([e[1], 0x0a]));
  ws.bytes(2, new Uint8Array([e[3], e[4]]));
  ws.bytes(1, new Uint8Array([0xff])); // invalid: U+FFFD, as TextDecoder does
  ws.bytes(2, new Uint8Array([e[2]])); // cut short by the exit: flushed as U+FFFD
  ws.message({ exit: 0, signal: null });
  assert.deepEqual(events, [
    ["output", { stdout: "caf" }], ["output", { stdout: "é\n" }], ["output", { stderr: "€" }],
    ["output", { stdout: "\ufffd" }], ["output", { stderr: "\ufffd" }], ["close", 0],
  ]);
});

test("splitOutputLines gives one call per line per stream and flushes the last partial lines at exit", () => {
  const { ddClient, sockets } = load();
  const { events, stream } = recorder({ splitOutputLines: true });
  ddClient.extension.vm.cli.exec("tail", ["-f", "x"], { stream });
  const ws = sockets[0];
  ws.open();
  ws.message({ stdout: "a\nb" });
  ws.message({ stderr: "e1" });
  ws.message({ stdout: "c\n\nd" });
  ws.message({ stderr: "\ne2" });
  ws.message({ exit: 0, signal: null });
  assert.deepEqual(events, [
    ["output", { stdout: "a" }], ["output", { stdout: "bc" }], ["output", { stdout: "" }],
    ["output", { stderr: "e1" }], ["output", { stdout: "d" }], ["output", { stderr: "e2" }], ["close", 0],
  ]);
});

test("a refusal calls onError, then onClose(126)", () => {
  const { ddClient, sockets } = load();
  const { events, stream } = recorder();
  ddClient.docker.cli.exec("-H", ["tcp://evil", "ps"], { stream });
  sockets[0].open();
  sockets[0].message({ error: "global flags are not allowed", type: "ExecRefused", code: 126 });
  sockets[0].drop(1008);
  assert.deepEqual(events, [["error", "ExecRefused", "global flags are not allowed"], ["close", 126]]);
});

test("a command that cannot start calls onError, then onClose with its status", () => {
  const { ddClient, sockets } = load();
  const { events, stream } = recorder();
  ddClient.extension.host.cli.exec("gone.sh", [], { stream });
  sockets[0].open();
  sockets[0].message({ error: "/x/gone.sh: not found", type: "ExecError", code: 127 });
  assert.deepEqual(events, [["error", "ExecError", "/x/gone.sh: not found"], ["close", 127]]);
});

test("close() asks dockext to end the process, once, and onClose gets the status it ended with", () => {
  const { ddClient, sockets } = load();
  const { events, stream } = recorder({ splitOutputLines: true });
  const proc = ddClient.docker.cli.exec("stats", [], { stream });
  const ws = sockets[0];
  ws.open();
  ws.message({ stdout: "partial" });
  proc.close();
  proc.close();
  assert.deepEqual(ws.sent.slice(1), [{ close: true }]);
  assert.deepEqual(events, []);
  ws.message({ exit: 143, signal: "SIGTERM" });
  ws.drop(1000);
  assert.deepEqual(events, [["output", { stdout: "partial" }], ["close", 143]]);
  proc.close();
  assert.equal(ws.sent.length, 2);
});

test("close() before the socket opens runs nothing and still calls onClose(143)", () => {
  const { ddClient, sockets } = load();
  const { events, stream } = recorder();
  const proc = ddClient.docker.cli.exec("stats", [], { stream });
  proc.close();
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, []);
  assert.equal(sockets[0].closedWith, 1000);
  assert.deepEqual(events, [["close", 143]]);
});

test("a lost connection is an error with onClose(-1), but not after close()", () => {
  let { ddClient, sockets } = load();
  let { events, stream } = recorder();
  ddClient.docker.cli.exec("logs", ["-f", "x"], { stream });
  sockets[0].open();
  sockets[0].drop(1012);
  assert.deepEqual(events, [["error", "Error", "dockext connection lost (WebSocket closed, code 1012)"], ["close", -1]]);

  ({ ddClient, sockets } = load());
  ({ events, stream } = recorder());
  const proc = ddClient.docker.cli.exec("logs", ["-f", "x"], { stream });
  sockets[0].open();
  proc.close();
  sockets[0].drop(1006);
  assert.deepEqual(events, [["close", 143]]);
});

test("a throwing callback does not stop the stream; the error is rethrown asynchronously", async () => {
  const uncaught = [];
  const timers = (fn, ms) =>
    setTimeout(() => {
      try {
        fn();
      } catch (e) {
        uncaught.push(e.message);
      }
    }, ms);
  const { ddClient, sockets } = load({ timers });
  const seen = [];
  ddClient.docker.cli.exec("logs", [], {
    stream: {
      onOutput: (data) => {
        seen.push(data.stdout);
        throw new Error("extension bug");
      },
      onClose: (code) => seen.push(code),
    },
  });
  sockets[0].open();
  sockets[0].message({ stdout: "a" });
  sockets[0].message({ stdout: "b" });
  sockets[0].message({ exit: 0, signal: null });
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(seen, ["a", "b", 0]);
  assert.deepEqual(uncaught, ["extension bug", "extension bug"]);
});

test("bad arguments to the streaming overload throw at once", () => {
  const { ddClient, sockets } = load();
  const isTypeError = (e) => e.name === "TypeError";
  assert.throws(() => ddClient.docker.cli.exec(42, [], { stream: {} }), isTypeError);
  assert.throws(() => ddClient.docker.cli.exec("ps", "-a", { stream: {} }), isTypeError);
  assert.equal(sockets.length, 0);
});

test("v0 spawn members stream through the callback: chunks, then {close, code}", () => {
  const { ddClient, sockets } = load();
  const seen = [];
  const cb = (data, error) => seen.push([plain(data), error ? error.message : error]);
  ddClient.spawnDockerCmd("logs", ["-f", "my ctr"], cb);
  ddClient.spawnHostCmd("sleeper.sh", ["m"], cb);
  ddClient.backend.spawnInVMExtension("ls", ["-l"], cb);
  assert.deepEqual(sockets.map((ws) => (ws.open(), ws.sent[0])).map((b) => [b.cli, b.cmd, b.args]), [
    ["docker", "logs", ["-f", "my ctr"]], ["host", "sleeper.sh", ["m"]], ["vm", "ls", ["-l"]],
  ]);
  sockets[0].message({ stdout: "hello\n" });
  sockets[0].message({ stderr: "warn" });
  sockets[0].message({ exit: 0, signal: null });
  sockets[1].message({ error: "not declared", type: "ExecRefused", code: 126 });
  assert.deepEqual(seen, [
    [{ stdout: "hello\n" }, null], [{ stderr: "warn" }, null], [{ close: true, code: 0 }, null],
    [{ error: "not declared" }, "not declared"], [{ close: true, code: 126 }, null],
  ]);
});

// ------------------------------------------------------------------------------------ engine reads

test("docker.listContainers / listImages GET the engine list with the options as JSON", async () => {
  const { ddClient, calls } = load({ respond: (url) => json(url.includes("/containers") ? [{ Id: "c1" }] : [{ Id: "i1" }]) });
  const options = { all: true, filters: JSON.stringify({ status: ["exited"] }) };
  assert.deepEqual(plain(await ddClient.docker.listContainers(options)), [{ Id: "c1" }]);
  assert.deepEqual(plain(await ddClient.docker.listImages()), [{ Id: "i1" }]);
  assert.deepEqual(plain(await ddClient.listContainers({ limit: 1 })), [{ Id: "c1" }]);
  assert.deepEqual(plain(await ddClient.listImages({ all: true })), [{ Id: "i1" }]);
  assert.equal(calls[0].url, `${API}/docker/containers?options=${encodeURIComponent(JSON.stringify(options))}`);
  assert.equal(calls[1].url, `${API}/docker/images?options=${encodeURIComponent("{}")}`);
  assert.equal(new URL(calls[0].url, PAGE).searchParams.get("options"), JSON.stringify(options));
  for (const c of calls) {
    assert.equal(c.init.headers["X-Dockext"], "1");
    assert.equal(c.init.method, undefined); // GET
  }
});

test("a failed engine list rejects an Error with dockext's message", async () => {
  const { ddClient } = load({
    respond: () => json({ error: { type: "EngineUnavailable", message: "cannot reach the Docker engine" } }, 503),
  });
  const err = await ddClient.docker.listContainers({}).catch((e) => e);
  assert.equal(err.message, "cannot reach the Docker engine");
  assert.equal(err.statusCode, 503);
  assert.equal(err.name, "Error");
});

// --------------------------------------------------------------------------- navigate, dialog (postMessage)

test("navigate posts a request to the dashboard and resolves undefined on its reply", async () => {
  const { ddClient, posted, window } = load();
  const done = ddClient.desktopUI.navigate.viewImage("sha256:abc", "latest", "extra");
  const other = ddClient.navigateToContainerLogs("c1");
  assert.equal(posted.length, 2);
  const [{ message, origin }, second] = plain(posted);
  assert.equal(origin, DASHBOARD);
  assert.equal(message.dockext, "navigate");
  assert.equal(message.route, "viewImage");
  assert.deepEqual(message.args, ["sha256:abc", "latest"]);
  assert.deepEqual(second.message.args, ["c1"]);
  assert.notEqual(message.id, second.message.id);
  window.deliver({ dockext: "reply", id: message.id, ok: true, value: null });
  assert.equal(await done, undefined);
  window.deliver({ dockext: "reply", id: second.message.id, ok: false, error: { message: "no such container: c1" } });
  await assert.rejects(other, (e) => e.message === "no such container: c1");
});

test("replies count only from window.parent with the dashboard origin", async () => {
  const { ddClient, posted, window } = load();
  const done = ddClient.desktopUI.navigate.viewContainers();
  const { id } = posted[0].message;
  assert.deepEqual(plain(posted[0].message.args), []);
  let settled = false;
  done.then(() => (settled = true), () => (settled = true));
  window.deliver({ dockext: "reply", id, ok: false, error: { message: "forged" } }, { origin: "http://evil.localhost:8765" });
  window.deliver({ dockext: "reply", id, ok: false, error: { message: "forged" } }, { source: {} });
  window.deliver({ dockext: "reply", id: "other", ok: true, value: null });
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(settled, false);
  window.deliver({ dockext: "reply", id, ok: true, value: null });
  assert.equal(await done, undefined);
});

test("viewDevEnvironments is a no-op; outside the dashboard navigation rejects", async () => {
  let { ddClient, posted, window } = load();
  assert.equal(await ddClient.desktopUI.navigate.viewDevEnvironments(), undefined);
  assert.equal(await ddClient.navigateToDevEnvironments(), undefined);
  assert.equal(posted.length, 0);
  window.parent = window;
  await assert.rejects(ddClient.desktopUI.navigate.viewVolumes(), /not inside the dockext dashboard/);
});

test("showOpenDialog sends the options and resolves {canceled, filePaths}", async () => {
  const { ddClient, posted, window } = load();
  const done = ddClient.desktopUI.dialog.showOpenDialog({ properties: ["openFile", "multiSelections"], filters: [] });
  const { message, origin } = plain(posted[0]);
  assert.equal(origin, DASHBOARD);
  assert.deepEqual({ ...message, id: undefined }, {
    dockext: "dialog", id: undefined, options: { properties: ["openFile", "multiSelections"], filters: [] },
  });
  window.deliver({ dockext: "reply", id: message.id, ok: true, value: { canceled: false, filePaths: ["/tmp/a b.txt"] } });
  assert.deepEqual(plain(await done), { canceled: false, filePaths: ["/tmp/a b.txt"] });
  const cyclic = {};
  cyclic.self = cyclic;
  await assert.rejects(ddClient.desktopUI.dialog.showOpenDialog(cyclic), (e) => e.name === "TypeError");
});

// ------------------------------------------------------------------------------------------------ web requests

const SITE = "https://auth.test/login/oauth/access_token";

test("web: a cross-origin fetch goes to the host with the page's method, headers and body", async () => {
  const { window, calls } = load({
    web: true,
    respond: () => new Response('{"access_token":"t"}', {
      status: 201,
      headers: { "Content-Type": "application/json", "X-Dockext-Url": `${SITE}?final`, "X-Dockext-Redirected": "1" },
    }),
  });
  const r = await window.fetch(SITE, { method: "POST", headers: { Authorization: "Bearer a", Accept: "application/json" },
    body: "code=c0de" });
  assert.equal(calls.length, 1);
  const { url, init } = calls[0];
  assert.equal(url, `${API}/web`);
  assert.equal(init.method, "POST");
  assert.equal(init.headers.get("X-Dockext"), "1");
  assert.equal(init.headers.get("X-Dockext-Target"), SITE);
  assert.equal(init.headers.get("X-Dockext-Redirect"), "follow");
  assert.equal(init.headers.get("Authorization"), "Bearer a");
  assert.equal(init.headers.get("Content-Type"), "text/plain;charset=UTF-8"); // what the browser would send
  assert.equal(new TextDecoder().decode(init.body), "code=c0de");
  assert.equal(init.credentials, "same-origin");
  assert.deepEqual([r.status, r.url, r.redirected], [201, `${SITE}?final`, true]);
  assert.deepEqual(await r.json(), { access_token: "t" });
});

test("web: same-origin and non-http requests, and every request without the permission, stay the browser's", async () => {
  const own = "http://acme-ext-abc123.localhost:8765/i/0123456789abcdef/data.json";
  for (const [web, url] of [[true, own], [true, "data:text/plain,x"], [false, SITE]]) {
    const { window, calls } = load({ web });
    await window.fetch(url);
    assert.equal(calls.length, 1);
    assert.notEqual(calls[0].url, `${API}/web`, url);
    assert.equal(calls[0].url.url ?? calls[0].url, url);
  }
});

test("web: withheld while the page is open, the browser makes the request itself", async () => {
  const { window, calls } = load({
    web: true,
    respond: (url) => url === `${API}/web`
      ? json({ error: { type: "PermissionDenied", message: "denied" } }, 403, { "X-Dockext-Proxy-Error": "withheld" })
      : new Response("from the browser"),
  });
  const r = await window.fetch(SITE, { method: "PUT", body: "b", headers: { "X-Custom": "1" } });
  assert.equal(await r.text(), "from the browser");
  assert.deepEqual(calls.map((c) => c.url), [`${API}/web`, SITE]);
  const again = calls[1].init;
  assert.equal(again.method, "PUT");
  assert.equal(again.headers.get("X-Custom"), "1");
  assert.equal(again.headers.get("X-Dockext-Target"), null);
  assert.equal(new TextDecoder().decode(again.body), "b");
  assert.equal(again.mode, "cors");
});

test("web: a request the host could not make rejects a TypeError with the reason", async () => {
  const { window } = load({
    web: true,
    respond: () => json({ error: { type: "WebRequestError", message: `${SITE} could not be requested: ConnectError` } },
      502, { "X-Dockext-Proxy-Error": "1" }),
  });
  await assert.rejects(window.fetch(SITE), (e) => {
    assert.equal(e.name, "TypeError");
    assert.equal(e.message, `Failed to fetch: ${SITE} could not be requested: ConnectError`);
    return true;
  });
});

// An answer whose body comes in the given pieces (strings, or bytes), each read separately.
function streamed(pieces) {
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    pull(controller) {
      if (!pieces.length) {
        controller.close();
        return;
      }
      const piece = pieces.shift();
      controller.enqueue(typeof piece === "string" ? encoder.encode(piece) : piece);
    },
  });
  return new Response(body, { headers: { "Content-Type": "text/event-stream; charset=utf-8" } });
}

const until = async (check) => {
  for (let i = 0; i < 200 && !check(); i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(check(), "timed out");
};

test("web: an event stream of another origin is read through the host, as EventSource reads one", async () => {
  const answers = [
    // lines end in \n, \r\n (split between two reads) and \r; a BOM; a comment; a field without a colon; a retry
    () => streamed(["\uFEFF: hello\nretry: 20\nid: 7\ndata: one\r", "\ndata: two\n\nevent: ping\rdata\r\r",
      "data: caf", new Uint8Array([0xc3]), new Uint8Array([0xa9, 0x0a, 0x0a]), // é split between two reads
      "data: never dispatched (no blank line)"]),
    () => streamed(["data: again\n\n"]),
    () => new Response(null, { status: 204 }), // "no more": the source fails for good
  ];
  const { window, calls, nativeSources } = load({ web: true, respond: () => answers.shift()() });
  const source = new window.EventSource(`${SITE}events`);
  assert.equal(nativeSources.length, 0);
  assert.equal(source.readyState, 0);
  const seen = [];
  source.onopen = () => seen.push("open");
  source.onmessage = (e) => seen.push(`message ${e.data} id=${e.lastEventId} origin=${e.origin}`);
  source.addEventListener("ping", (e) => seen.push(`ping [${e.data}]`));
  source.onerror = () => seen.push(`error ${source.readyState}`);
  try {
    await until(() => source.readyState === 2);
  } finally {
    source.close(); // (a failed test leaves nothing reconnecting)
  }
  const origin = new URL(SITE).origin;
  assert.deepEqual(seen, [
    "open", `message one\ntwo id=7 origin=${origin}`, "ping []", `message café id=7 origin=${origin}`,
    "error 0", "open", `message again id=7 origin=${origin}`, "error 0", "error 2",
  ]);
  assert.deepEqual(calls.map((c) => c.url), [`${API}/web`, `${API}/web`, `${API}/web`]);
  assert.equal(calls[0].init.headers.get("X-Dockext-Target"), `${SITE}events`);
  assert.equal(calls[0].init.headers.get("Accept"), "text/event-stream");
  assert.equal(calls[0].init.headers.get("Last-Event-ID"), null);
  assert.equal(calls[1].init.headers.get("Last-Event-ID"), "7"); // sent back when it reconnects
  assert.equal(source.url, `${SITE}events`);
  assert.ok(source instanceof window.EventSource && !(source instanceof Array));
});

test("web: close() ends an event stream for good", async () => {
  const { window, calls } = load({ web: true, respond: () => streamed(["retry: 1\ndata: x\n\n"]) });
  const source = new window.EventSource(`${SITE}events`);
  let messages = 0;
  source.onmessage = () => {
    messages += 1;
    source.close();
  };
  await until(() => messages === 1);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(source.readyState, 2);
  assert.equal(calls.length, 1);
});

test("web: same-origin event streams, and all without the permission, are the browser's EventSource", () => {
  const own = "http://acme-ext-abc123.localhost:8765/i/0123456789abcdef/events";
  for (const [web, url] of [[true, own], [false, SITE]]) {
    const { window, calls, nativeSources } = load({ web });
    const source = new window.EventSource(url, { withCredentials: true });
    assert.equal(nativeSources.length, 1);
    assert.equal(source, nativeSources[0]);
    assert.ok(source instanceof window.EventSource);
    assert.equal(calls.length, 0);
  }
});
