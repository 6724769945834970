// Shared by the v1 and v0 conformance pages (compiled to common.js, loaded before v1.js / v0.js).
//
// A page is a list of checks. Each check calls part of window.ddClient and renders what happened, as JSON,
// into an element with a fixed id (`<dd id="<check id>" data-result data-state="pending|done">`):
//   {"ok": <what the check returned>}       the calls resolved (the check picks the facts worth asserting)
//   {"error": <the rejection's own fields>}  a call rejected or threw; see describe()
//   {"timeout": <ms>}                         nothing settled in time
// tests/e2e/test_conformance.py reads these and asserts each one. Checks that need the user (dialogs), that
// leave the page (navigation) or that need the test to arrange something first (a dead backend) run when
// their button is clicked; the others run on load, after which #status says "done".

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const CHECK_TIMEOUT_MS = 30_000;

/** The query string the test opened the page with (container id, image id, a scratch folder...). */
const params = new URLSearchParams(window.location.search);

function param(name: string): string {
  const value = params.get(name);
  if (value === null) throw new Error(`the page needs ?${name}=... in its URL`);
  return value;
}

/**
 * A JSON picture of any value: own properties (also non-enumerable ones such as an Error's `message`),
 * functions left out, `undefined` as "<undefined>", an Error's class as "$error".
 */
function describe(value: unknown, depth = 0): Json {
  if (value === undefined) return "<undefined>";
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "function") return "<function>";
  if (typeof value !== "object" || depth > 6) return String(value);
  if (Array.isArray(value)) return value.map((v) => describe(v, depth + 1));
  const out: { [key: string]: Json } = {};
  if (value instanceof Error) out.$error = value.name;
  const record = value as Record<string, unknown>;
  for (const key of Object.getOwnPropertyNames(value)) {
    if (key === "stack" || typeof record[key] === "function") continue;
    out[key] = describe(record[key], depth + 1);
  }
  return out;
}

/** Whether `key` is an own property of `value` (to tell "absent" from "undefined"). */
function has(value: unknown, key: string): boolean {
  return typeof value === "object" && value !== null && Object.prototype.hasOwnProperty.call(value, key);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function element<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string>, text?: string):
  HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A titled group of results on the page. */
function section(title: string): HTMLElement {
  const main = document.getElementById("checks");
  if (!main) throw new Error("the page has no #checks");
  const box = element("section", {});
  box.append(element("h2", {}, title), element("dl", {}));
  main.appendChild(box);
  return box;
}

function resultSlot(where: HTMLElement, id: string, label: string): HTMLElement {
  const list = where.querySelector("dl");
  if (!list) throw new Error("a section without a list");
  const dd = element("dd", { id, "data-result": "", "data-state": "pending" }, "pending");
  list.append(element("dt", {}, label), dd);
  return dd;
}

async function settle(run: () => unknown): Promise<Json> {
  let timer = 0;
  const timeout = new Promise<Json>((resolve) => {
    timer = window.setTimeout(() => resolve({ timeout: CHECK_TIMEOUT_MS }), CHECK_TIMEOUT_MS);
  });
  const outcome = (async (): Promise<Json> => {
    try {
      return { ok: describe(await run()) };
    } catch (e: unknown) {
      return { error: describe(e) };
    }
  })();
  try {
    return await Promise.race([outcome, timeout]);
  } finally {
    window.clearTimeout(timer);
  }
}

function render(slot: HTMLElement, result: Json): void {
  slot.textContent = JSON.stringify(result);
  slot.dataset.state = "done";
}

/** Runs `run` now and renders its outcome into #id. */
async function check(where: HTMLElement, id: string, label: string, run: () => unknown): Promise<void> {
  const slot = resultSlot(where, id, label);
  render(slot, await settle(run));
}

/** A button #id; each click runs `run` and renders its outcome into #<id>-result. */
function action(where: HTMLElement, id: string, label: string, run: () => unknown): void {
  const slot = resultSlot(where, `${id}-result`, label);
  slot.textContent = "not run";
  slot.dataset.state = "idle";
  const button = element("button", { id, type: "button" }, label);
  button.addEventListener("click", async () => {
    slot.dataset.state = "pending";
    slot.textContent = "pending";
    render(slot, await settle(run));
  });
  slot.before(button);
}

/** Runs every check of the automatic part, then sets #status to "done". */
function runPage(checks: () => Promise<void>[]): void {
  const start = (): void => {
    const status = document.getElementById("status");
    Promise.allSettled(checks()).then(() => {
      if (status) status.textContent = "done";
    });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start, { once: true });
  else start();
}

/** What an exec call resolved with: the fields the typings promise, and whether the helpers work. */
function execFacts(r: V1ExecResult | V0ExecResult): Json {
  return {
    keys: Object.keys(r).sort(),
    cmd: r.cmd ?? "<undefined>",
    code: has(r, "code") ? describe(r.code) : "<absent>",
    stdout: r.stdout,
    stderr: r.stderr,
    lines: r.lines(),
  };
}

/** What an exec call rejected with (Node's exec error shape in Docker Desktop). */
function execFailure(e: unknown): Json {
  const fields = describe(e);
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) return fields;
  const helpers = ["lines", "parseJsonLines", "parseJsonObject"].map(
    (name) => typeof (e as Record<string, unknown>)[name],
  );
  return { ...fields, helpers };
}

/** Runs `run` expecting a rejection: resolves with execFailure(e); a resolution is an error. */
async function rejection(run: () => Promise<unknown>, facts: (e: unknown) => Json = describe): Promise<Json> {
  let value: unknown;
  try {
    value = await run();
  } catch (e: unknown) {
    return { rejected: facts(e) };
  }
  throw new Error(`expected a rejection, got ${JSON.stringify(describe(value))}`);
}

/** Calls `fn`, which must throw synchronously (or return a rejected promise); returns what it threw. */
async function thrown(fn: () => unknown): Promise<Json> {
  try {
    const value = fn();
    if (value instanceof Promise) await value;
    return { returned: describe(value) };
  } catch (e: unknown) {
    return { threw: describe(e) };
  }
}
