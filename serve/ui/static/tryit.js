// The try-it page: send the form to /invocations, show the result in <model-viewer>.
// Same origin as the API, so the X-Gen3D-Metadata header is readable.
const $ = (id) => document.getElementById(id);
const viewablePath = document.querySelector("script[data-viewable]").dataset.viewable;
const viewer = $("viewer");
const SUFFIX = { glb: ".glb", ply: ".ply", obj: ".obj" };
const LABELS = {
  backend: "backend", faces: "faces", vertices: "vertices", points: "points",
  batch_size: "batch size", queue_ms: "queue (ms)", inference_ms: "inference (ms)",
  round_trip_ms: "round trip (ms)", bytes: "file size (bytes)", seed: "seed",
  request_id: "request id", version: "server version",
};
let objectUrls = [];

function showThumb(input, img) {
  const file = input.files[0];
  if (file) img.src = URL.createObjectURL(file); else img.removeAttribute("src");
}
$("image").addEventListener("change", () => showThumb($("image"), $("image-thumb")));
$("mask").addEventListener("change", () => showThumb($("mask"), $("mask-thumb")));

$("exposure").addEventListener("input", (e) => { viewer.exposure = Number(e.target.value); });
$("shadow").addEventListener("change", (e) => { viewer.shadowIntensity = e.target.checked ? 1 : 0; });
$("rotate").addEventListener("change", (e) => { viewer.autoRotate = e.target.checked; });

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
  setStatus("");
}

// The server's own message for a typed error ({"error": {code, message, request_id}}).
async function serverMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) {
      const id = body.error.request_id ? ` (request ${body.error.request_id})` : "";
      return `${body.error.message} [${body.error.code}, HTTP ${response.status}]${id}`;
    }
  } catch (_) { /* not JSON: fall through */ }
  return `HTTP ${response.status} ${response.statusText}`;
}

function showMetadata(meta) {
  const body = $("metadata").querySelector("tbody");
  body.replaceChildren();
  const keys = Object.keys(LABELS).filter((k) => k in meta)
    .concat(Object.keys(meta).filter((k) => !(k in LABELS)).sort());
  for (const key of keys) {
    const row = body.insertRow();
    row.insertCell().textContent = LABELS[key] ?? key;
    row.insertCell().textContent = String(meta[key]);
  }
  $("metadata").hidden = keys.length === 0;
}

function remember(url) { objectUrls.push(url); return url; }

$("request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").hidden = true;
  objectUrls.forEach((u) => URL.revokeObjectURL(u));
  objectUrls = [];
  const format = $("format").value;
  const form = new FormData();
  form.append("image", $("image").files[0]);
  if ($("mask").files[0]) form.append("mask", $("mask").files[0]);
  form.append("seed", $("seed").value || "0");
  form.append("format", format);
  if ($("options").value.trim()) form.append("options", $("options").value.trim());

  $("submit").disabled = true;
  viewer.dataset.state = "waiting";
  setStatus("Making the 3D asset …");
  const started = performance.now();
  try {
    const response = await fetch("/invocations", { method: "POST", body: form });
    if (!response.ok) { showError(await serverMessage(response)); viewer.dataset.state = "error"; return; }
    const asset = await response.blob();
    const meta = JSON.parse(response.headers.get("X-Gen3D-Metadata") || "{}");
    meta.round_trip_ms = Math.round(performance.now() - started);
    meta.bytes = asset.size;
    showMetadata(meta);

    const stem = ($("image").files[0].name || "result").replace(/\.[^.]+$/, "");
    const link = $("download");
    link.href = remember(URL.createObjectURL(asset));
    link.download = `${stem}_3d${SUFFIX[format]}`;
    link.textContent = `Download ${link.download}`;
    link.hidden = false;

    let glb = asset;
    if (format !== "glb") {  // <model-viewer> shows glTF only: convert on the server
      setStatus("Converting for the viewer …");
      const converted = await fetch(viewablePath, {
        method: "POST", body: asset,
        headers: { "Content-Type": response.headers.get("Content-Type") || "application/octet-stream" },
      });
      if (!converted.ok) { showError(await serverMessage(converted)); viewer.dataset.state = "error"; return; }
      glb = await converted.blob();
    }
    setStatus("Loading the viewer …");
    viewer.src = remember(URL.createObjectURL(glb));
  } catch (err) {
    showError(`could not reach the server: ${err.message}`);
    viewer.dataset.state = "error";
  } finally {
    $("submit").disabled = false;
  }
});

viewer.addEventListener("load", () => {
  viewer.dataset.state = "loaded";
  setStatus("Drag to turn, scroll to zoom.");
});
viewer.addEventListener("error", (event) => {
  viewer.dataset.state = "error";
  showError(`the viewer could not show the file: ${event.detail?.type ?? "unknown error"}`);
});
