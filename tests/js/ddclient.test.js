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

// Loads the SDK the way the server serves it (config + themes.js + ddclient.js, one classic script) into a
// fresh context whose global object is `window`. `respond(url, init)` answers the SDK's fetches.
function load({ extension = {}, respond = () => json({}) } = {}) {
  const calls = [];
  const posted = [];
  const sandbox = {
    console,
    setTimeout,
    URL,
    Headers,
    Blob,
    FormData,
    URLSearchParams,
    Response,
    parent: { postMessage: (message, origin) => posted.push({ message, origin }) },
    fetch: async (url, init) => {
      calls.push({ url, init });
      return respond(url, init);
    },
  };
  sandbox.window = sandbox;
  vm.createContext(sandbox);
  const cfg = {
    api: API,
    dashboardOrigin: DASHBOARD,
    extension: { id: "acme/ext", image: "acme/ext:1.0", hasVm: true, hasService: true, hasHost: true, ...extension },
    host: { platform: "linux", arch: "x64", hostname: "box" },
  };
  vm.runInContext(`window.__dockextConfig = ${JSON.stringify(cfg)};\n${THEMES}\n${DDCLIENT}`, sandbox);
  return { ddClient: sandbox.ddClient, window: sandbox, calls, posted };
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

test("the streaming overload reports 'not supported yet' through onError", async () => {
  const { ddClient, calls } = load();
  let error;
  const proc = ddClient.docker.cli.exec("logs", ["-f", "x"], { stream: { onError: (e) => (error = e) } });
  assert.equal(typeof proc.close, "function");
  assert.equal(typeof proc.then, "undefined");
  assert.equal(error, undefined); // not before the caller has the handle
  await new Promise((r) => setTimeout(r, 5));
  assert.match(error.message, /streaming exec is not supported yet by dockext/);
  proc.close();
  assert.equal(calls.length, 0);
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

test("unsupported members reject with a clear error", async () => {
  const { ddClient } = load();
  for (const fn of [
    () => ddClient.desktopUI.dialog.showOpenDialog({}),
    () => ddClient.desktopUI.navigate.viewContainers(),
    () => ddClient.docker.listContainers({ all: true }),
    () => ddClient.listImages(),
    () => ddClient.navigateToImage("sha256:x", "latest"),
  ]) {
    await assert.rejects(fn(), /not supported yet by dockext/);
  }
  let seen;
  ddClient.spawnDockerCmd("logs", ["-f", "x"], (data, error) => (seen = error));
  await new Promise((r) => setTimeout(r, 5));
  assert.match(seen.message, /not supported yet by dockext/);
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
