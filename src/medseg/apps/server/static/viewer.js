// medseg's browser viewer: upload or pick a scan, segment it with a served model, look at the overlay.
// No build step, no dependency: the server's POST /v1/models/{name}/predict?format=viewer answers the scan
// (float32, (C, *spatial)) and its labels (uint8) in base64 with the mask file itself (docs/serve.md).
"use strict";

const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
];
const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem("medseg-key") || "",
  models: [],
  scan: null, // {shape, spacing, channels, image: Float32Array, labels: Uint8Array, overlapping, classes}
  channel: 0, // a channel index, or "rgb"
  window: 1, level: 0, opacity: 0.5, crosshair: true,
  colours: {}, visible: {}, // by class index
  cursor: [], // the voxel every view passes through (array order)
  views: [],
};

// ---- the API ----
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["X-API-Key"] = state.key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("key-form").hidden = false;
    throw new Error("this server needs an API key: enter it above");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind === "error" ? "error" : "muted";
}

async function loadModels() {
  const { models } = await (await api("/v1/models")).json();
  state.models = models;
  const select = $("model");
  select.replaceChildren(...models.map((m) => new Option(`${m.name} (${m.dimensions}D)`, m.name)));
  showModel();
  $("key-form").hidden = true;
  try {
    const { examples } = await (await api("/v1/examples")).json();
    $("example").replaceChildren(new Option("—", ""), ...examples.map((e) => new Option(e, e)));
    $("examples-row").hidden = examples.length === 0;
  } catch (e) { /* no examples */ }
  updateRunButton();
}

function showModel() {
  const model = state.models.find((m) => m.name === $("model").value);
  if (!model) return;
  const names = Object.entries(model.labels).filter(([k]) => model.overlapping || k !== "0").map(([, v]) => v);
  $("model-info").textContent = `${model.channels.join(", ")} → ${names.join(", ")}`;
}

function updateRunButton() {
  const chosen = $("file").files.length > 0 || $("example").value;
  $("run").disabled = !(chosen && $("model").value) || document.body.dataset.state === "running";
}

async function chosenScan() {
  if ($("file").files.length > 0) return $("file").files[0];
  const name = $("example").value;
  const blob = await (await api(`/v1/examples/${encodeURIComponent(name)}`)).blob();
  return new File([blob], name);
}

async function run() {
  document.body.dataset.state = "running";
  updateRunButton();
  const model = $("model").value;
  try {
    const file = await chosenScan();
    setStatus(`Segmenting ${file.name} with ${model}…`);
    const form = new FormData();
    form.append("file", file, file.name);
    const started = performance.now();
    const answer = await (await api(`/v1/models/${encodeURIComponent(model)}/predict?format=viewer`,
      { method: "POST", body: form })).json();
    show(answer, (performance.now() - started) / 1000);
    document.body.dataset.state = "done";
    setStatus(`${file.name}: segmented with ${model}.`);
  } catch (error) {
    document.body.dataset.state = "error";
    setStatus(error.message, "error");
  }
  updateRunButton();
}

// ---- the answer ----
function decode(base64, Type) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Type(bytes.buffer);
}

function show(answer, roundTrip) {
  const view = answer.view;
  state.scan = {
    shape: view.shape, spacing: view.spacing, channels: view.channels, overlapping: view.overlapping,
    classes: view.classes, image: decode(view.image, Float32Array), labels: decode(view.labels, Uint8Array),
  };
  state.colours = {}; state.visible = {};
  view.classes.forEach((c, i) => { state.colours[c.index] = PALETTE[i % PALETTE.length]; state.visible[c.index] = true; });
  const rgb = view.channels === 3 && view.shape.length === 2;
  const channels = [...Array(view.channels).keys()].map((c) => new Option(`channel ${c}`, String(c)));
  if (rgb) channels.unshift(new Option("colour (RGB)", "rgb"));
  $("channel").replaceChildren(...channels);
  $("channel-row").hidden = channels.length < 2;
  state.channel = rgb ? "rgb" : 0;
  state.cursor = centreOfStructures();
  autoWindow();
  structuresTable(answer.structures);
  download(answer);
  $("timing").textContent = `prediction ${answer.seconds.toFixed(2)} s on the server, ${roundTrip.toFixed(2)} s with the transfer`;
  $("display").hidden = false;
  $("results").hidden = false;
  buildViews();
  render();
}

function structuresTable(structures) {
  const sizes = Object.fromEntries(structures.map((s) => [s.index, s]));
  const rows = state.scan.classes.map((c) => {
    const row = document.createElement("tr");
    const visible = Object.assign(document.createElement("input"), { type: "checkbox", checked: true });
    visible.setAttribute("aria-label", `show ${c.name}`);
    visible.addEventListener("change", () => { state.visible[c.index] = visible.checked; render(); });
    const colour = Object.assign(document.createElement("input"), { type: "color", value: hex(state.colours[c.index]) });
    colour.setAttribute("aria-label", `colour of ${c.name}`);
    colour.addEventListener("input", () => { state.colours[c.index] = rgbOf(colour.value); render(); });
    const size = sizes[c.index];
    const text = size ? `${size.unit === "voxels" ? size.size.toFixed(0) : size.size.toFixed(3)} ${size.unit}` : "";
    [visible, colour, c.name, text].forEach((content) => {
      const cell = document.createElement("td");
      cell.append(content);
      row.append(cell);
    });
    row.dataset.index = c.index;
    return row;
  });
  $("classes").tBodies[0].replaceChildren(...rows);
}

function download(answer) {
  const link = $("download");
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  const bytes = Uint8Array.from(atob(answer.mask_base64), (c) => c.charCodeAt(0));
  link.href = URL.createObjectURL(new Blob([bytes], { type: answer.media_type }));
  link.download = answer.filename;
  link.textContent = `Download ${answer.filename}`;
}

const hex = (c) => "#" + c.map((v) => v.toString(16).padStart(2, "0")).join("");
const rgbOf = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

// ---- geometry: which voxel a view's pixel shows ----
// 3D scans are (z, y, x) in array order: axial rows y, columns x; coronal rows z (top = last), columns x;
// sagittal rows z (top = last), columns y. A 2D scan (y, x) has one view.
function planes() {
  const s = state.scan.shape;
  if (s.length === 2) return [{ name: "image", axis: null, rows: 0, cols: 1, flip: false }];
  return [
    { name: "axial", axis: 0, rows: 1, cols: 2, flip: false },
    { name: "coronal", axis: 1, rows: 0, cols: 2, flip: true },
    { name: "sagittal", axis: 2, rows: 0, cols: 1, flip: true },
  ];
}

function voxelAt(plane, row, col) {
  const voxel = state.cursor.slice();
  voxel[plane.rows] = plane.flip ? state.scan.shape[plane.rows] - 1 - row : row;
  voxel[plane.cols] = col;
  return voxel;
}

function offset(voxel) {
  const s = state.scan.shape;
  return s.length === 2 ? voxel[0] * s[1] + voxel[1] : (voxel[0] * s[1] + voxel[1]) * s[2] + voxel[2];
}

function centreOfStructures() {
  const { shape, labels, overlapping } = state.scan;
  const n = shape.reduce((a, b) => a * b, 1);
  const sum = shape.map(() => 0);
  let count = 0;
  for (let i = 0; i < n; i++) {
    let fg = false;
    if (overlapping) { for (let k = 0; k < labels.length / n && !fg; k++) fg = labels[k * n + i] > 0; } else fg = labels[i] > 0;
    if (!fg) continue;
    count++;
    let rest = i;
    for (let a = shape.length - 1; a >= 0; a--) { sum[a] += rest % shape[a]; rest = Math.floor(rest / shape[a]); }
  }
  return shape.map((d, a) => (count ? Math.round(sum[a] / count) : Math.floor(d / 2)));
}

// ---- window and level ----
function channelValues() {
  const { image, shape, channels } = state.scan;
  const n = shape.reduce((a, b) => a * b, 1);
  if (state.channel === "rgb") return image;
  return image.subarray(state.channel * n, (state.channel + 1) * n);
}

function autoWindow() {
  const values = channelValues();
  const step = Math.max(1, Math.floor(values.length / 200000));
  const sample = [];
  for (let i = 0; i < values.length; i += step) sample.push(values[i]);
  sample.sort((a, b) => a - b);
  const lo = sample[Math.floor(sample.length * 0.005)], hi = sample[Math.floor(sample.length * 0.995)];
  const min = sample[0], max = sample[sample.length - 1];
  const span = Math.max(max - min, 1e-6);
  for (const [id, low, high] of [["window", span / 1000, span * 2], ["level", min - span / 2, max + span / 2]]) {
    Object.assign($(id), { min: low, max: high, step: span / 1000 });
  }
  setWindow(Math.max(hi - lo, span / 1000), (hi + lo) / 2);
}

function setWindow(width, level) {
  state.window = Math.max(width, Number($("window").min) || 1e-6);
  state.level = level;
  $("window").value = state.window; $("level").value = state.level;
  $("window-value").textContent = format(state.window);
  $("level-value").textContent = format(state.level);
}

const format = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3));

// ---- drawing ----
function buildViews() {
  const container = $("views");
  state.views = planes().map((plane) => {
    const box = document.createElement("div");
    box.className = "view";
    box.dataset.plane = plane.name;
    const title = document.createElement("h3");
    const label = document.createElement("span");
    label.textContent = plane.name;
    const where = document.createElement("span");
    where.className = "slice";
    title.append(label, where);
    const stack = document.createElement("div");
    stack.className = "stack";
    const canvas = document.createElement("canvas");
    canvas.className = "image";
    const overlay = document.createElement("canvas");
    overlay.className = "crosshair";
    stack.append(canvas, overlay);
    box.append(title, stack);
    const view = { plane, box, canvas, overlay, where, slider: null };
    if (plane.axis !== null) {
      const slider = Object.assign(document.createElement("input"), { type: "range", min: 0, max: state.scan.shape[plane.axis] - 1 });
      slider.setAttribute("aria-label", `${plane.name} slice`);
      slider.addEventListener("input", () => { state.cursor[plane.axis] = Number(slider.value); render(); });
      box.append(slider);
      view.slider = slider;
    }
    listen(view);
    return view;
  });
  container.replaceChildren(...state.views.map((v) => v.box));
}

function listen(view) {
  const { plane, overlay } = view;
  overlay.addEventListener("wheel", (event) => {
    if (plane.axis === null) return;
    event.preventDefault();
    const last = state.scan.shape[plane.axis] - 1;
    state.cursor[plane.axis] = Math.min(last, Math.max(0, state.cursor[plane.axis] + Math.sign(event.deltaY)));
    render();
  }, { passive: false });
  overlay.addEventListener("contextmenu", (event) => event.preventDefault());
  let drag = null;
  overlay.addEventListener("mousedown", (event) => {
    if (event.button === 2) drag = { x: event.clientX, y: event.clientY, window: state.window, level: state.level };
    else if (event.button === 0) { const v = pick(view, event); if (v) { state.cursor = v; render(); } }
  });
  window.addEventListener("mouseup", () => { drag = null; });
  overlay.addEventListener("mousemove", (event) => {
    if (drag) {
      const span = Number($("window").max) / 2;
      setWindow(drag.window * Math.exp((event.clientX - drag.x) / 200), drag.level - ((event.clientY - drag.y) / 400) * span);
      render();
    }
    const voxel = pick(view, event);
    if (voxel) readout(voxel);
  });
}

function pick(view, event) {
  const { plane, overlay } = view;
  const rect = overlay.getBoundingClientRect();
  const s = state.scan.shape;
  const col = Math.floor(((event.clientX - rect.left) / rect.width) * s[plane.cols]);
  const row = Math.floor(((event.clientY - rect.top) / rect.height) * s[plane.rows]);
  if (row < 0 || col < 0 || row >= s[plane.rows] || col >= s[plane.cols]) return null;
  return voxelAt(plane, row, col);
}

function readout(voxel) {
  const { classes, labels, overlapping, shape } = state.scan;
  const n = shape.reduce((a, b) => a * b, 1);
  const i = offset(voxel);
  const here = overlapping
    ? classes.filter((c) => labels[c.index * n + i] > 0).map((c) => c.name)
    : classes.filter((c) => c.index === labels[i]).map((c) => c.name);
  const value = state.channel === "rgb" ? [0, 1, 2].map((c) => state.scan.image[c * n + i]).join(", ") : format(channelValues()[i]);
  $("readout").textContent = `voxel (${voxel.join(", ")}) value ${value} ${here.join(", ") || "background"}`;
}

function render() {
  if (!state.scan) return;
  for (const view of state.views) draw(view);
}

function draw(view) {
  const { plane, canvas, overlay } = view;
  const { shape, spacing, image, labels, overlapping, classes } = state.scan;
  const n = shape.reduce((a, b) => a * b, 1);
  const height = shape[plane.rows], width = shape[plane.cols];
  const pixels = new ImageData(width, height);
  const lo = state.level - state.window / 2, scale = 255 / state.window;
  const gray = (v) => Math.min(255, Math.max(0, (v - lo) * scale));
  const values = channelValues();
  const shown = classes.filter((c) => state.visible[c.index]);
  const alpha = state.opacity;
  // voxel offsets along the view: offset(voxelAt(plane, row, col)) = first + row * down + col * across
  const first = offset(voxelAt(plane, 0, 0));
  const down = height > 1 ? offset(voxelAt(plane, 1, 0)) - first : 0;
  const across = width > 1 ? offset(voxelAt(plane, 0, 1)) - first : 0;
  for (let row = 0; row < height; row++) {
    for (let col = 0; col < width; col++) {
      const i = first + row * down + col * across;
      let r, g, b;
      if (state.channel === "rgb") { r = gray(image[i]); g = gray(image[n + i]); b = gray(image[2 * n + i]); } else { r = g = b = gray(values[i]); }
      for (const c of shown) {
        const on = overlapping ? labels[c.index * n + i] > 0 : labels[i] === c.index;
        if (!on) continue;
        const colour = state.colours[c.index];
        r = r * (1 - alpha) + colour[0] * alpha; g = g * (1 - alpha) + colour[1] * alpha; b = b * (1 - alpha) + colour[2] * alpha;
      }
      const p = (row * width + col) * 4;
      pixels.data[p] = r; pixels.data[p + 1] = g; pixels.data[p + 2] = b; pixels.data[p + 3] = 255;
    }
  }
  // the physical aspect ratio: a pixel is spacing[cols] wide and spacing[rows] high, fitted into the box
  const box = 380, mmWide = width * spacing[plane.cols], mmHigh = height * spacing[plane.rows];
  const fit = box / Math.max(mmWide, mmHigh);
  const cssWidth = Math.max(1, Math.round(mmWide * fit)), cssHeight = Math.max(1, Math.round(mmHigh * fit));
  canvas.width = width; canvas.height = height;
  canvas.getContext("2d").putImageData(pixels, 0, 0);
  for (const c of [canvas, overlay]) { c.style.width = `${cssWidth}px`; c.style.height = `${cssHeight}px`; }
  overlay.width = cssWidth; overlay.height = cssHeight;
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, cssWidth, cssHeight);
  if (plane.axis !== null) {
    view.slider.value = state.cursor[plane.axis];
    view.where.textContent = `slice ${state.cursor[plane.axis] + 1} / ${shape[plane.axis]}`;
    if (state.crosshair) {
      const row = plane.flip ? shape[plane.rows] - 1 - state.cursor[plane.rows] : state.cursor[plane.rows];
      const y = ((row + 0.5) / height) * cssHeight, x = ((state.cursor[plane.cols] + 0.5) / width) * cssWidth;
      context.strokeStyle = "rgba(255, 255, 0, 0.6)";
      context.beginPath(); context.moveTo(0, y); context.lineTo(cssWidth, y); context.moveTo(x, 0); context.lineTo(x, cssHeight); context.stroke();
    }
  } else {
    view.where.textContent = `${width} × ${height}`;
  }
}

// ---- wiring ----
function start() {
  $("key").value = state.key;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("medseg-key", state.key);
    loadModels().catch((error) => setStatus(error.message, "error"));
  });
  $("model").addEventListener("change", () => { showModel(); updateRunButton(); });
  $("file").addEventListener("change", () => { if ($("file").files.length) $("example").value = ""; updateRunButton(); });
  $("example").addEventListener("change", () => { if ($("example").value) $("file").value = ""; updateRunButton(); });
  $("run").addEventListener("click", run);
  $("channel").addEventListener("change", () => {
    state.channel = $("channel").value === "rgb" ? "rgb" : Number($("channel").value);
    autoWindow(); render();
  });
  $("window").addEventListener("input", () => { setWindow(Number($("window").value), state.level); render(); });
  $("level").addEventListener("input", () => { setWindow(state.window, Number($("level").value)); render(); });
  $("auto-window").addEventListener("click", () => { autoWindow(); render(); });
  $("opacity").addEventListener("input", () => {
    state.opacity = Number($("opacity").value);
    $("opacity-value").textContent = state.opacity.toFixed(2);
    render();
  });
  $("crosshair").addEventListener("change", () => { state.crosshair = $("crosshair").checked; render(); });
  loadModels().catch((error) => setStatus(error.message, "error"));
}

start();
