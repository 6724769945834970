// Conformance UI for the v1 API of @docker/extension-api-client-types 0.4.2: every member of
// DockerDesktopClient (extension, desktopUI, host, docker) is called at least once, through the official
// types, and what it did is rendered for tests/e2e/test_conformance.py (see common.ts for the format).
//
// The page is opened with ?container=<backend container id>&containerName=<its name>&project=<compose project>
// &image=<extension image id>&ref=<its reference>&tag=<tag>&volume=<a volume name>&dir=<a scratch folder on the host>.

(() => {
  const dd: V1Client = window.ddClient;

  /** A streaming exec, recorded: every onOutput call in order, onError and onClose calls. */
  interface StreamRecord {
    events: Json[];
    errors: Json[];
    closes: Json[];
  }

  function stream(
    exec: V1Exec,
    cmd: string,
    args: string[],
    options: { splitOutputLines?: boolean; cwd?: string; env?: NodeJS.ProcessEnv } = {},
    onStart?: (proc: V1ExecProcess, record: StreamRecord) => void,
  ): Promise<Json> {
    return new Promise((resolve) => {
      const record: StreamRecord = { events: [], errors: [], closes: [] };
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        // a moment more, so that a second onClose (or output after it) would be seen
        setTimeout(() => resolve({ ...record }), 300);
      };
      const handlers: V1ExecStreamOptions = {
        onOutput: (data) => {
          record.events.push(describe(data));
        },
        onError: (error: unknown) => {
          record.errors.push(describe(error));
          setTimeout(finish, 1000); // onClose may follow
        },
        onClose: (exitCode: number) => {
          record.closes.push({ exitCode: describe(exitCode), type: typeof exitCode });
          finish();
        },
        splitOutputLines: options.splitOutputLines ?? false,
      };
      // An object literal with `stream`, as extensions write it: that selects the streaming overload of Exec.
      const proc: V1ExecProcess = exec(cmd, args, { cwd: options.cwd, env: options.env, stream: handlers });
      if (onStart) onStart(proc, record);
    });
  }

  /** `docker events` for our backend container, until one exec event (`?execEvent=`: exec_create on Docker, exec on
   * Podman), then ExecProcess.close(). */
  function eventsThenClose(containerName: string): Promise<Json> {
    return new Promise((resolve, reject) => {
      const events: Json[] = [];
      const closes: Json[] = [];
      const errors: Json[] = [];
      let closedAt = 0;
      let outputAfterClose = 0;
      let triggering = true;
      const proc = dd.docker.cli.exec(
        "events",
        ["--format", "{{json .}}", "--filter", `container=${containerName}`, "--filter", `event=${param("execEvent")}`],
        {
          stream: {
            splitOutputLines: true,
            onOutput: (data) => {
              if (closedAt) outputAfterClose += 1;
              if (data.stdout === undefined || events.length > 0) return;
              const event = JSON.parse(data.stdout) as { Type?: string; Action?: string; Actor?: { ID?: string } };
              // Podman has been seen to pass on an exec event of another container despite the filter (2 runs in
              // 8): what is checked here is dockext's stream and close(), not the engine's filter
              if (event.Actor?.ID !== param("container")) return;
              events.push({ type: event.Type ?? null, action: event.Action ?? null, actor: event.Actor?.ID ?? null });
              triggering = false;
              closedAt = Date.now();
              const returned = proc.close();
              events.push({ closeReturned: describe(returned) });
            },
            onError: (error: unknown) => {
              errors.push(describe(error));
            },
            onClose: (exitCode: number) => {
              closes.push({ exitCode: describe(exitCode), type: typeof exitCode, afterClose: closedAt > 0 });
              setTimeout(
                () => resolve({ events, closes, errors, outputAfterClose, closeToOnCloseMs: closedAt ? "measured" : null }),
                300,
              );
            },
          },
        },
      );
      // docker events only reports what happens after it subscribed: poke the container until one arrives.
      (async () => {
        for (let i = 0; i < 40 && triggering; i++) {
          await sleep(500);
          if (!triggering) break;
          const vm = dd.extension.vm;
          if (!vm) return reject(new Error("no extension.vm"));
          await vm.cli.exec("true", []).catch(() => undefined);
        }
        if (triggering) reject(new Error(`no ${param("execEvent")} event within 20 s; errors=${JSON.stringify(errors)}`));
      })();
    });
  }

  function needVm(): NonNullable<V1Client["extension"]["vm"]> {
    const vm = dd.extension.vm;
    if (!vm) throw new Error("ddClient.extension.vm is undefined, but this extension has a backend");
    return vm;
  }

  function needService(): V1HttpService {
    const service = needVm().service;
    if (!service) throw new Error("ddClient.extension.vm.service is undefined, but the backend exposes a socket");
    return service;
  }

  function needHost(): NonNullable<V1Client["extension"]["host"]> {
    const host = dd.extension.host;
    if (!host) throw new Error("ddClient.extension.host is undefined, but this extension has host binaries");
    return host;
  }

  const serviceFailure = (e: unknown): Json => {
    const error = e as Partial<V1ServiceError>;
    return { fields: describe(e), name: error.name ?? null, message: error.message ?? null,
      statusCode: error.statusCode ?? null };
  };

  runPage(() => {
    const container = param("container");
    const containerName = param("containerName");
    const project = param("project");
    const imageId = param("image");
    const dir = param("dir");

    // ---------------------------------------------------------------------------------------- extension
    const ext = section("ddClient.extension");
    const host = section("ddClient.host");
    const ui = section("ddClient.desktopUI.toast");
    const docker = section("ddClient.docker.cli.exec");
    const vmExec = section("ddClient.extension.vm.cli.exec");
    const hostExec = section("ddClient.extension.host.cli.exec");
    const streams = section("streaming exec ({stream})");
    const service = section("ddClient.extension.vm.service");
    const lists = section("ddClient.docker.listContainers / listImages");

    return [
      check(ext, "extension-image", "extension.image", () => dd.extension.image),
      check(ext, "extension-members", "extension.vm / vm.service / host", () => ({
        vmCliExec: typeof dd.extension.vm?.cli.exec,
        service: ["get", "post", "put", "patch", "delete", "head", "request"].map(
          (m) => typeof (dd.extension.vm?.service as unknown as Record<string, unknown> | undefined)?.[m],
        ),
        hostCliExec: typeof dd.extension.host?.cli.exec,
      })),

      // ---------------------------------------------------------------------------------------- host
      check(host, "host-info", "host.platform / arch / hostname", () => ({
        platform: dd.host.platform, arch: dd.host.arch, hostname: dd.host.hostname,
      })),
      check(host, "host-open-external-http", "host.openExternal(http URL)",
        () => thrown(() => dd.host.openExternal("http://127.0.0.1:9/opened-by-conformance-v1?x=1"))),
      check(host, "host-open-external-file", "host.openExternal(file: URL) is refused",
        () => thrown(() => dd.host.openExternal("file:///etc/passwd"))),

      // ---------------------------------------------------------------------------------------- toasts
      check(ui, "toast", "toast.success / warning / error", () => [
        dd.desktopUI.toast.success("conformance v1: success toast"),
        dd.desktopUI.toast.warning("conformance v1: warning toast"),
        dd.desktopUI.toast.error("conformance v1: error toast <b>not bold</b>"),
      ]),

      // ---------------------------------------------------------------------------------------- docker
      check(docker, "docker-exec-json", "docker.cli.exec info --format \"{{json .OSType}}\"", async () => {
        const r = await dd.docker.cli.exec("info", ["--format", '"{{json .OSType}}"']);
        return { ...(execFacts(r) as object), stderr: null, parsed: r.parseJsonObject() };
      }),
      check(docker, "docker-exec-json-lines", "docker.cli.exec image ls --format {{json .}} (parseJsonLines)",
        async () => {
          const r = await dd.docker.cli.exec("image", ["ls", "--format", '"{{json .}}"', "--filter", `reference=${dd.extension.image}`]);
          return r.parseJsonLines().map((i: { Repository: string; Tag: string }) => `${i.Repository}:${i.Tag}`);
        }),
      check(docker, "docker-exec-error", "docker.cli.exec of a failing command rejects",
        () => rejection(() => dd.docker.cli.exec("image", ["inspect", "dockext-conformance-no-such-image:0"]),
          execFailure)),
      check(docker, "docker-exec-env", "docker.cli.exec with options.env", async () => {
        // `-e NAME` without a value: docker takes the value from its own environment
        const r = await dd.docker.cli.exec("exec", ["-e", "CONF_DOCKER_ENV", containerName, "sh", "-c", "'echo $CONF_DOCKER_ENV'"],
          { env: { CONF_DOCKER_ENV: "from the docker CLI's environment" } });
        return r.stdout;
      }),
      check(docker, "docker-exec-cwd", "docker.cli.exec with options.cwd (relative --env-file)", async () => {
        const r = await dd.docker.cli.exec("exec", ["--env-file", "conformance.env", containerName, "sh", "-c", "'echo $FROM_ENV_FILE'"],
          { cwd: dir });
        return r.stdout;
      }),
      check(docker, "docker-exec-refused", "docker.cli.exec -H ... is refused",
        () => rejection(() => dd.docker.cli.exec("-H", ["unix:///tmp/conformance.sock", "ps"]), execFailure)),

      // ---------------------------------------------------------------------------------------- vm exec
      check(vmExec, "vm-exec-split", "vm.cli.exec: args joined, then split like a shell", async () => {
        const vm = needVm();
        const plain = await vm.cli.exec("/app/args.sh", ["one two", "three"]);
        const quoted = await vm.cli.exec("/app/args.sh", ["'one two'", "\"three four\""]);
        return { plain: execFacts(plain), quoted: quoted.stdout };
      }),
      check(vmExec, "vm-exec-cwd-env", "vm.cli.exec with options.cwd and options.env", async () => {
        const r = await needVm().cli.exec("sh", ["-c", '"pwd; echo $CONF_VM_ENV"'],
          { cwd: "/app", env: { CONF_VM_ENV: "vm env value" } });
        return r.lines();
      }),
      check(vmExec, "vm-exec-error", "vm.cli.exec of a failing command rejects",
        () => rejection(() => needVm().cli.exec("sh", ["-c", '"echo out; echo err >&2; exit 7"']), execFailure)),

      // ---------------------------------------------------------------------------------------- host exec
      check(hostExec, "host-exec-args", "host.cli.exec: args joined, then split like a shell", async () => {
        const r = await needHost().cli.exec("conf-host", ["args", "one two", "'three four'"]);
        return execFacts(r);
      }),
      check(hostExec, "host-exec-default-cwd", "host.cli.exec runs in the extension's host folder", async () => {
        const r = await needHost().cli.exec("conf-host", ["where"]);
        return r.stdout;
      }),
      check(hostExec, "host-exec-cwd-env", "host.cli.exec with options.cwd and options.env", async () => {
        const r = await needHost().cli.exec("conf-host", ["where"], { cwd: dir, env: { CONF_HOST_ENV: "host env value" } });
        return r.stdout;
      }),
      check(hostExec, "host-exec-json", "host.cli.exec: lines / parseJsonLines / parseJsonObject", async () => {
        const lines = await needHost().cli.exec("conf-host", ["json-lines"]);
        const object = await needHost().cli.exec("conf-host", ["json-object"]);
        return { lines: lines.lines(), jsonLines: lines.parseJsonLines(), object: object.parseJsonObject() };
      }),
      check(hostExec, "host-exec-error", "host.cli.exec of a failing command rejects",
        () => rejection(() => needHost().cli.exec("conf-host", ["fail"]), execFailure)),
      check(hostExec, "host-exec-refused", "host.cli.exec of an undeclared binary is refused",
        () => rejection(() => needHost().cli.exec("../conf-host", ["args"]), execFailure)),

      // ---------------------------------------------------------------------------------------- streaming
      check(streams, "stream-host-lines", "host exec, splitOutputLines: stdout/stderr lines in order, onClose(5)",
        () => stream(needHost().cli.exec, "conf-host", ["stream"], { splitOutputLines: true })),
      check(streams, "stream-host-chunks", "host exec, raw chunks", async () => {
        const record = (await stream(needHost().cli.exec, "conf-host", ["stream"])) as unknown as StreamRecord;
        const events = record.events as { stdout?: string; stderr?: string }[];
        return {
          keys: [...new Set(events.map((e) => Object.keys(e).join("+")))].sort(),
          stdout: events.map((e) => e.stdout ?? "").join(""),
          stderr: events.map((e) => e.stderr ?? "").join(""),
          errors: record.errors,
          closes: record.closes,
        };
      }),
      check(streams, "stream-host-verbatim", "host exec, args verbatim (no re-splitting)",
        () => stream(needHost().cli.exec, "conf-host", ["args", "one two", "three"], { splitOutputLines: true })),
      check(streams, "stream-host-cwd-env", "host exec with cwd and env",
        () => stream(needHost().cli.exec, "conf-host", ["where"],
          { splitOutputLines: true, cwd: dir, env: { CONF_HOST_ENV: "streamed env value" } })),
      check(streams, "stream-vm", "vm exec, verbatim argv, onClose(4)",
        () => stream(needVm().cli.exec, "sh", ["-c", "echo vm out; sleep 0.3; echo vm err >&2; exit 4"],
          { splitOutputLines: true, cwd: "/app", env: { CONF_VM_ENV: "unused" } })),
      check(streams, "stream-docker", "docker exec streamed",
        () => stream(dd.docker.cli.exec, "version", ["--format", "{{.Server.APIVersion}}"], { splitOutputLines: true })),
      check(streams, "stream-refused", "a refused streaming exec calls onError",
        () => stream(needHost().cli.exec, "not-declared", [], { splitOutputLines: true })),
      check(streams, "stream-host-close", "host exec of a waiting binary, then ExecProcess.close(): onClose(143)",
        () => stream(needHost().cli.exec, "conf-host", ["wait"], { splitOutputLines: true }, (proc, record) => {
          const poll = setInterval(() => {
            if (record.events.length === 0) return;
            clearInterval(poll);
            record.events.push({ closeReturned: describe(proc.close()) });
          }, 20);
        })),
      check(streams, "stream-docker-events-close", "docker events, then ExecProcess.close()",
        () => eventsThenClose(containerName)),

      // ---------------------------------------------------------------------------------------- vm.service
      check(service, "service-get", "vm.service.get", () => needService().get("/hello")),
      check(service, "service-post", "vm.service.post (JSON body)", () => needService().post("/echo", { n: 1, s: "ä" })),
      check(service, "service-put", "vm.service.put", () => needService().put("/echo", { put: true })),
      check(service, "service-patch", "vm.service.patch", () => needService().patch("/echo", [1, 2])),
      check(service, "service-delete", "vm.service.delete", () => needService().delete("/echo?id=7")),
      check(service, "service-head", "vm.service.head", async () => {
        const head = await needService().head("/head-probe");
        const seen = await needService().get("/seen?path=/head-probe");
        return { head, seen };
      }),
      check(service, "service-request", "vm.service.request (method, headers, data)", () =>
        needService().request({ url: "/echo?via=request", method: "PUT", headers: { "X-Conformance": "yes" },
          data: { k: "v" } })),
      check(service, "service-request-get", "vm.service.request GET", () =>
        needService().request({ url: "/hello", method: "GET", headers: {}, data: undefined })),
      check(service, "service-text", "vm.service.get of a text/plain answer", () => needService().get("/text")),
      check(service, "service-418", "vm.service non-2xx rejects (ServiceError)",
        () => rejection(() => needService().get("/status/418"), serviceFailure)),
      check(service, "service-500", "vm.service 500 rejects",
        () => rejection(() => needService().post("/status/500", { x: 1 }), serviceFailure)),

      // ---------------------------------------------------------------------------------------- lists
      check(lists, "list-containers", "docker.listContainers({all, filters: JSON string})", async () => {
        const found = (await dd.docker.listContainers({
          all: true, filters: JSON.stringify({ label: [`com.docker.compose.project=${project}`] }),
        })) as { Id: string; Names: string[]; State: string; Labels: Record<string, string> }[];
        return found.map((c) => ({ id: c.Id, names: c.Names, state: c.State,
          project: c.Labels["com.docker.compose.project"] ?? null }));
      }),
      check(lists, "list-containers-object-filter", "docker.listContainers({filters: object})", async () => {
        const found = (await dd.docker.listContainers({ filters: { id: [container] } })) as { Id: string }[];
        return found.map((c) => c.Id);
      }),
      check(lists, "list-containers-none", "docker.listContainers with a filter matching nothing", () =>
        dd.docker.listContainers({ all: true, filters: JSON.stringify({ name: ["dockext-conformance-no-such-container"] }) })),
      check(lists, "list-images", "docker.listImages({filters: reference})", async () => {
        const found = (await dd.docker.listImages({
          filters: JSON.stringify({ reference: [dd.extension.image] }), digests: true,
        })) as { Id: string; RepoTags: string[] | null }[];
        return found.map((i) => ({ id: i.Id, repoTags: i.RepoTags }));
      }),
      check(lists, "list-images-all", "docker.listImages() without options", async () => {
        const found = (await dd.docker.listImages()) as { Id: string }[];
        return { isArray: Array.isArray(found), hasOwnImage: found.some((i) => i.Id === imageId) };
      }),
    ];
  });

  // ------------------------------------------------------------------------------- on request of the test

  document.addEventListener("DOMContentLoaded", () => {
    const dir = params.get("dir") ?? "/";
    const container = params.get("container") ?? "";
    const imageId = params.get("image") ?? "";
    const tag = params.get("tag") ?? "";
    const volume = params.get("volume") ?? "";
    const nav: V1NavigationIntents = dd.desktopUI.navigate;

    const dialogs = section("ddClient.desktopUI.dialog.showOpenDialog (the user picks in the dashboard)");
    const dialogFacts = (r: V1OpenDialogResult): Json => ({ keys: Object.keys(r).sort(), canceled: r.canceled,
      filePaths: r.filePaths });
    action(dialogs, "dialog-file", "openFile with filters", async () => dialogFacts(
      await dd.desktopUI.dialog.showOpenDialog({
        title: "Conformance: pick a JSON file", buttonLabel: "Pick", message: "Choose data.json",
        properties: ["openFile"], defaultPath: dir,
        filters: [{ name: "JSON", extensions: ["json"] }, { name: "All files", extensions: ["*"] }],
      })));
    action(dialogs, "dialog-multi", "openFile + multiSelections", async () => dialogFacts(
      await dd.desktopUI.dialog.showOpenDialog({ properties: ["openFile", "multiSelections"], defaultPath: dir })));
    action(dialogs, "dialog-dir", "openDirectory", async () => dialogFacts(
      await dd.desktopUI.dialog.showOpenDialog({ properties: ["openDirectory"], defaultPath: dir })));
    action(dialogs, "dialog-cancel", "cancelled", async () => dialogFacts(
      await dd.desktopUI.dialog.showOpenDialog({ properties: ["openFile"], defaultPath: dir })));

    const dead = section("vm.service when the backend is down (the test stops it first)");
    action(dead, "service-dead", "vm.service.get to a stopped backend",
      () => rejection(() => needService().get("/hello"), serviceFailure));

    const missing = section("ddClient.desktopUI.navigate to objects that do not exist: each rejects");
    const noContainer = "0".repeat(64);
    action(missing, "navigate-missing", "every navigate.* that takes an id", async () => {
      const out: { [name: string]: Json } = {};
      const calls: [string, () => Promise<void>][] = [
        ["viewContainer", () => nav.viewContainer(noContainer)],
        ["viewContainerLogs", () => nav.viewContainerLogs(noContainer)],
        ["viewContainerInspect", () => nav.viewContainerInspect(noContainer)],
        ["viewContainerTerminal", () => nav.viewContainerTerminal(noContainer)],
        ["viewContainerStats", () => nav.viewContainerStats(noContainer)],
        ["viewImage", () => nav.viewImage(`sha256:${"0".repeat(64)}`, "latest")],
        ["viewVolume", () => nav.viewVolume("dockext-conformance-no-such-volume")],
      ];
      for (const [name, call] of calls) out[name] = await rejection(call);
      return out;
    });

    // Each of these leaves the extension (its UI is destroyed): the test opens the tab again for the next.
    const leave = section("ddClient.desktopUI.navigate to existing objects: the dashboard shows them");
    const intents: [string, () => Promise<void>][] = [
      ["viewContainers", () => nav.viewContainers()],
      ["viewContainer", () => nav.viewContainer(container)],
      ["viewContainerLogs", () => nav.viewContainerLogs(container)],
      ["viewContainerInspect", () => nav.viewContainerInspect(container)],
      ["viewContainerTerminal", () => nav.viewContainerTerminal(container)],
      ["viewContainerStats", () => nav.viewContainerStats(container)],
      ["viewImages", () => nav.viewImages()],
      ["viewImage", () => nav.viewImage(imageId, tag)],
      ["viewVolumes", () => nav.viewVolumes()],
      ["viewVolume", () => nav.viewVolume(volume)],
    ];
    for (const [name, call] of intents) action(leave, `nav-${name}`, `navigate.${name}`, call);
  });
})();
