// Conformance UI for the deprecated v0 API of @docker/extension-api-client-types 0.4.2 (the top-level
// members of window.ddClient: backend.*, exec*/spawn*, toast*, navigateTo*, listContainers/listImages,
// openExternal), written against `v0.DockerDesktopClient`. Every member is called at least once; results are
// rendered for tests/e2e/test_conformance.py (see common.ts for the format).
//
// Opened with the same query as the v1 page: ?container=&containerName=&project=&image=&ref=&tag=&volume=&dir=

(() => {
  const dd: V0Client = window.ddClient;

  function needBackend(): V0Backend {
    if (!dd.backend) throw new Error("ddClient.backend is undefined, but this extension has a backend");
    return dd.backend;
  }

  /** A v0 spawn*: every callback(data, error) call in order, until one carries the exit code or an error. */
  function spawned(start: (callback: (data: unknown, error: unknown) => void) => void): Promise<Json> {
    return new Promise((resolve) => {
      const calls: Json[] = [];
      let finished = false;
      start((data: unknown, error: unknown) => {
        calls.push({ data: describe(data), error: describe(error) });
        const code = typeof data === "object" && data !== null ? (data as { code?: unknown }).code : undefined;
        if (!finished && (code !== undefined || (error !== undefined && error !== null))) {
          finished = true;
          setTimeout(() => {
            const datas = calls.map((c) => (c as { data: { stdout?: string; stderr?: string } }).data);
            resolve({
              stdout: datas.map((d) => (typeof d === "object" && d !== null && typeof d.stdout === "string" ? d.stdout : "")).join(""),
              stderr: datas.map((d) => (typeof d === "object" && d !== null && typeof d.stderr === "string" ? d.stderr : "")).join(""),
              last: calls[calls.length - 1] ?? null,
              calls: calls.length,
            });
          }, 300);
        }
      });
    });
  }

  const serviceFailure = (e: unknown): Json => {
    const error = e as { name?: string; message?: string; statusCode?: number };
    return { fields: describe(e), name: error.name ?? null, message: error.message ?? null,
      statusCode: error.statusCode ?? null };
  };

  runPage(() => {
    const containerName = param("containerName");
    const project = param("project");

    const backend = section("ddClient.backend (HTTP)");
    const backendExec = section("ddClient.backend exec / spawn");
    const docker = section("ddClient.execDockerCmd / spawnDockerCmd");
    const host = section("ddClient.execHostCmd / spawnHostCmd");
    const ui = section("ddClient.toast* / openExternal");
    const lists = section("ddClient.listContainers / listImages");

    return [
      // ---------------------------------------------------------------------------------------- backend
      check(backend, "v0-backend-members", "backend members", () =>
        ["get", "post", "put", "patch", "delete", "head", "request", "execInContainer", "execInVMExtension",
          "spawnInVMExtension"].map((m) => typeof (needBackend() as unknown as Record<string, unknown>)[m])),
      check(backend, "v0-backend-get", "backend.get", () => needBackend().get("/hello")),
      check(backend, "v0-backend-post", "backend.post", () => needBackend().post("/echo", { v0: true })),
      check(backend, "v0-backend-put", "backend.put", () => needBackend().put("/echo", "plain string body")),
      check(backend, "v0-backend-patch", "backend.patch", () => needBackend().patch("/echo", { n: 2 })),
      check(backend, "v0-backend-delete", "backend.delete", () => needBackend().delete("/echo")),
      check(backend, "v0-backend-head", "backend.head", async () => {
        const head = await needBackend().head("/v0-head-probe");
        return { head, seen: await needBackend().get("/seen?path=/v0-head-probe") };
      }),
      check(backend, "v0-backend-request", "backend.request", () =>
        needBackend().request({ url: "/echo?via=v0", method: "PATCH", headers: { "X-Conformance": "v0" },
          data: { r: 1 } })),
      check(backend, "v0-backend-404", "backend non-2xx rejects",
        () => rejection(() => needBackend().get("/status/404"), serviceFailure)),

      // ---------------------------------------------------------------------------------------- backend exec
      check(backendExec, "v0-exec-in-vm", "backend.execInVMExtension(command line)", async () =>
        execFacts(await needBackend().execInVMExtension("/app/args.sh one 'two three'"))),
      check(backendExec, "v0-exec-in-vm-error", "backend.execInVMExtension of a failing command rejects",
        () => rejection(() => needBackend().execInVMExtension("sh -c 'echo v0 err >&2; exit 9'"), execFailure)),
      check(backendExec, "v0-exec-in-container", "backend.execInContainer(container, command line)", async () =>
        (await needBackend().execInContainer(containerName, "/app/args.sh x 'y z'")).stdout),
      check(backendExec, "v0-spawn-in-vm", "backend.spawnInVMExtension(cmd, args, callback)", () =>
        spawned((cb) => needBackend().spawnInVMExtension("sh", ["-c", "echo v0 out; sleep 0.3; echo v0 err >&2; exit 6"], cb))),

      // ---------------------------------------------------------------------------------------- docker
      check(docker, "v0-exec-docker", "execDockerCmd(cmd, ...args) (variadic)", async () => {
        const r = await dd.execDockerCmd("info", "--format", '"{{json .OSType}}"');
        return { ...(execFacts(r) as object), stderr: null, parsed: r.parseJsonObject() };
      }),
      check(docker, "v0-exec-docker-error", "execDockerCmd of a failing command rejects",
        () => rejection(() => dd.execDockerCmd("image", "inspect", "dockext-conformance-no-such-image:0"), execFailure)),
      check(docker, "v0-spawn-docker", "spawnDockerCmd(cmd, args, callback)", () =>
        spawned((cb) => dd.spawnDockerCmd("version", ["--format", "{{.Server.APIVersion}}"], cb))),

      // ---------------------------------------------------------------------------------------- host
      check(host, "v0-exec-host", "execHostCmd(command line)", async () =>
        execFacts(await dd.execHostCmd("conf-host args one 'two three'"))),
      check(host, "v0-exec-host-error", "execHostCmd of a failing command rejects",
        () => rejection(() => dd.execHostCmd("conf-host fail"), execFailure)),
      check(host, "v0-spawn-host", "spawnHostCmd(cmd, args, callback)", () =>
        spawned((cb) => dd.spawnHostCmd("conf-host", ["stream"], cb))),

      // ---------------------------------------------------------------------------------------- ui
      check(ui, "v0-toast", "toastSuccess / toastWarning / toastError", () => [
        dd.toastSuccess("conformance v0: success toast"),
        dd.toastWarning("conformance v0: warning toast"),
        dd.toastError("conformance v0: error toast"),
      ]),
      check(ui, "v0-open-external-http", "openExternal(http URL)",
        () => thrown(() => dd.openExternal("http://127.0.0.1:9/opened-by-conformance-v0"))),
      check(ui, "v0-open-external-file", "openExternal(file: URL) is refused",
        () => thrown(() => dd.openExternal("file:///etc/passwd"))),

      // ---------------------------------------------------------------------------------------- lists
      // The v0 typings declare the options as `never`: extensions had to cast.
      check(lists, "v0-list-containers", "listContainers(options)", async () => {
        const found = (await dd.listContainers({
          all: true, filters: JSON.stringify({ label: [`com.docker.compose.project=${project}`] }),
        } as never)) as { Names: string[]; State: string }[];
        return found.map((c) => ({ names: c.Names, state: c.State }));
      }),
      check(lists, "v0-list-images", "listImages(options)", async () => {
        const found = (await dd.listImages({ filters: JSON.stringify({ reference: [param("ref")] }) } as never)) as
          { Id: string }[];
        return found.map((i) => i.Id);
      }),
    ];
  });

  // ------------------------------------------------------------------------------- on request of the test

  document.addEventListener("DOMContentLoaded", () => {
    const container = params.get("container") ?? "";
    const imageId = params.get("image") ?? "";
    const tag = params.get("tag") ?? "";
    const volume = params.get("volume") ?? "";

    const missing = section("navigateTo* objects that do not exist: each rejects");
    const noContainer = "0".repeat(64);
    action(missing, "navigate-missing", "every navigateTo* that takes an id", async () => {
      const out: { [name: string]: Json } = {};
      const calls: [string, () => Promise<unknown>][] = [
        ["navigateToContainer", () => dd.navigateToContainer(noContainer)],
        ["navigateToContainerLogs", () => dd.navigateToContainerLogs(noContainer)],
        ["navigateToContainerInspect", () => dd.navigateToContainerInspect(noContainer)],
        ["navigateToContainerStats", () => dd.navigateToContainerStats(noContainer)],
        ["navigateToImage", () => dd.navigateToImage(`sha256:${"0".repeat(64)}`, "latest")],
        // typed `void` in v0, yet Docker Desktop's implementation returns the same promise as v1's
        ["navigateToVolume", () => Promise.resolve(dd.navigateToVolume("dockext-conformance-no-such-volume") as unknown)],
      ];
      for (const [name, call] of calls) out[name] = await rejection(call);
      return out;
    });

    // Each of these leaves the extension: the test opens the tab again for the next one.
    const leave = section("navigateTo* existing objects: the dashboard shows them");
    const intents: [string, () => unknown][] = [
      ["navigateToContainers", () => dd.navigateToContainers()],
      ["navigateToContainer", () => dd.navigateToContainer(container)],
      ["navigateToContainerLogs", () => dd.navigateToContainerLogs(container)],
      ["navigateToContainerInspect", () => dd.navigateToContainerInspect(container)],
      ["navigateToContainerStats", () => dd.navigateToContainerStats(container)],
      ["navigateToImages", () => dd.navigateToImages()],
      ["navigateToImage", () => dd.navigateToImage(imageId, tag)],
      ["navigateToVolumes", () => dd.navigateToVolumes()],
      ["navigateToVolume", () => dd.navigateToVolume(volume)],
    ];
    for (const [name, call] of intents) action(leave, `nav-${name}`, `${name}`, call);
  });
})();
