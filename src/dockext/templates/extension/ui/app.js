// The UI of this extension: a plain ES module, no build step. Docker Desktop (and dockext) define
// window.ddClient before the page's scripts run; the API: https://docs.docker.com/extensions/extensions-sdk/dev/api/overview/
const ddClient = window.ddClient;
const $ = (id) => document.getElementById(id);

// What a failed call says: ddClient rejects with an Error, or with {message, statusCode} from the backend.
function describe(error) {
  if (error && typeof error === "object") return error.message || error.stderr || JSON.stringify(error);
  return String(error);
}

async function callBackend() {
  const out = $("hello");
  out.classList.remove("error");
  out.textContent = "Calling the backend…";
  try {
    let answer = await ddClient.extension.vm.service.get("/hello");
    if (typeof answer === "string") {
      try { answer = JSON.parse(answer); } catch { /* not JSON: shown as it is */ }
    }
    out.textContent = answer && typeof answer.message === "string" ? answer.message : JSON.stringify(answer);
  } catch (error) {
    out.classList.add("error");
    out.textContent = `The backend did not answer: ${describe(error)}`;
  }
}

function showToast() {
  ddClient.desktopUI.toast.success(`Hello from ${document.title}!`);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function listContainers() {
  const rows = $("containers").tBodies[0];
  const status = $("containers-status");
  status.classList.remove("error");
  status.textContent = "Loading…";
  try {
    const containers = await ddClient.docker.listContainers();
    rows.replaceChildren(...containers.map((c) => {
      const tr = document.createElement("tr");
      const name = (c.Names && c.Names[0]) || c.Id.slice(0, 12);
      tr.append(cell(name.replace(/^\//, "")), cell(c.Image), cell(c.Status || c.State));
      return tr;
    }));
    status.textContent = containers.length === 1 ? "1 container is running." :
      `${containers.length} containers are running.`;
  } catch (error) {
    rows.replaceChildren();
    status.classList.add("error");
    status.textContent = `Could not list the containers: ${describe(error)}`;
  }
}

if (ddClient) {
  $("call-backend").addEventListener("click", callBackend);
  $("show-toast").addEventListener("click", showToast);
  $("refresh-containers").addEventListener("click", listContainers);
  callBackend();
  listContainers();
} else {
  $("no-client").hidden = false;
  for (const button of document.querySelectorAll("button")) button.disabled = true;
  $("hello").textContent = "No backend to call.";
  $("containers-status").textContent = "No engine to ask.";
}
