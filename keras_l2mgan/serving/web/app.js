// The editing page: every call goes to this server's TF Serving REST API.
"use strict";

const STRIP_ALPHAS = [0, 0.25, 0.5, 0.75, 1, 1.25];
const $ = (id) => document.getElementById(id);
const state = { model: null, info: null, photo: null, reference: null, source: null,
                running: false, again: false };

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

const predict = (signature, payload) =>
  api(`/v1/models/${encodeURIComponent(state.model)}:predict`,
      { signature_name: signature, ...payload });

// Domain names as attribute values ("smiling+not_male"), or null (cat, dog, ...).
function attributeTable(names) {
  const rows = names.map((name) => Object.fromEntries(name.split("+").map((token) =>
    token.startsWith("not_") ? [token.slice(4), false] : [token, true])));
  const keys = Object.keys(rows[0]).sort().join();
  return rows.every((row) => Object.keys(row).sort().join() === keys) ? rows : null;
}

async function loadModels() {
  const { models } = await api("/l2m/models");
  const select = $("model");
  for (const model of models) select.add(new Option(model.name, model.name));
  select.addEventListener("change", () => chooseModel(select.value));
  if (models.length) await chooseModel(models[0].name);
  else setStatus("No models served.", true);
}

async function chooseModel(name) {
  state.model = name;
  const { outputs } = await predict("metadata", { inputs: {} });
  const meta = await api(`/v1/models/${encodeURIComponent(name)}/metadata`);
  const signatures = meta.metadata.signature_def.signature_def;
  state.info = { names: outputs.domain_names, size: outputs.img_size,
                 like: "edit_like" in signatures };
  state.table = attributeTable(state.info.names);
  document.querySelector('input[value="like"]').disabled = !state.info.like;
  setStatus(`Model ${name}: ${state.info.size} px, domains ${state.info.names.join(", ")}. ` +
            (state.photo ? "" : "Pick a photo."));
  if (state.photo) await setPhoto(state.photoImage);
  else buildTargets();
}

function buildTargets() {
  const box = $("targets");
  box.textContent = "";
  const names = state.info.names;
  const source = state.source ?? 0;
  if (state.table) {
    box.append("Target attributes: ");
    const current = state.table[source];
    Object.keys(current).sort().forEach((key, i) => {
      const label = document.createElement("label");
      const input = Object.assign(document.createElement("input"),
        { type: "checkbox", name: "attribute", value: key,
          checked: i === 0 ? !current[key] : current[key] });  // first attribute flipped
      input.addEventListener("change", scheduleEdit);
      label.append(input, ` ${key}`);
      box.append(label);
    });
  } else {
    const select = Object.assign(document.createElement("select"), { id: "target-domain" });
    names.forEach((n, i) => select.add(new Option(n, String(i))));
    select.value = String(names.length > 1 ? (source + 1) % names.length : 0);
    select.addEventListener("change", scheduleEdit);
    const label = document.createElement("label");
    label.append("Target ", select);
    box.append(label);
  }
}

function targetDomain() {
  if (!state.table) return Number($("target-domain").value);
  const wanted = {};
  document.querySelectorAll('input[name="attribute"]').forEach((b) => { wanted[b.value] = b.checked; });
  const index = state.table.findIndex((row) => Object.keys(row).every((k) => row[k] === wanted[k]));
  if (index < 0) throw new Error(`no domain has ${JSON.stringify(wanted)}`);
  return index;
}

// The image's centred square at the model's size, as nested [row][column][rgb] uint8 lists.
function cropPixels(image, canvas) {
  const size = state.info.size;
  canvas.width = canvas.height = size;
  const side = Math.min(image.naturalWidth, image.naturalHeight);
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(image, (image.naturalWidth - side) / 2, (image.naturalHeight - side) / 2,
                    side, side, 0, 0, size, size);
  const data = context.getImageData(0, 0, size, size).data;
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = [];
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 4;
      row.push([data[i], data[i + 1], data[i + 2]]);
    }
    rows.push(row);
  }
  return rows;
}

function draw(canvas, pixels) {
  const size = pixels.length;
  canvas.width = canvas.height = size;
  const context = canvas.getContext("2d");
  const image = context.createImageData(size, size);
  let i = 0;
  for (const row of pixels) for (const [r, g, b] of row) {
    image.data[i++] = r; image.data[i++] = g; image.data[i++] = b; image.data[i++] = 255;
  }
  context.putImageData(image, 0, 0);
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`${file.name} is not an image the browser can read`));
    image.src = URL.createObjectURL(file);
  });
}

async function setPhoto(image) {
  state.photoImage = image;
  state.photo = cropPixels(image, $("before"));
  const { predictions } = await predict("guess_domain", { instances: [state.photo] });
  state.source = predictions[0].source_domain;
  $("before-caption").textContent = `before (${state.info.names[state.source]})`;
  buildTargets();
  scheduleEdit();
}

async function setReference(image) {
  state.referenceImage = image;
  state.reference = cropPixels(image, $("reference-view"));
  scheduleEdit();
}

function mode() { return document.querySelector('input[name="mode"]:checked').value; }

function requestFor(alphas) {
  if (mode() === "like") {
    return { signature: "edit_like", payload: { instances: alphas.map((alpha) => ({
      images: state.photo, reference: state.reference, source_domain: state.source,
      reference_domain: -1, alpha })) } };
  }
  const target = targetDomain();
  return { signature: "serving_default", payload: { instances: alphas.map((alpha) => ({
    images: state.photo, source_domain: state.source, target_domain: target, alpha })) } };
}

function caption() {
  if (mode() === "like") return "like the reference";
  return `${state.info.names[state.source]} → ${state.info.names[targetDomain()]}`;
}

async function runEdits() {
  if (!state.photo || (mode() === "like" && !state.reference)) {
    if (state.photo) setStatus("Pick a reference face.");
    return;
  }
  const alpha = Number($("alpha").value);
  const after = $("after");
  after.dataset.state = "busy";
  try {
    const { signature, payload } = requestFor([alpha, ...STRIP_ALPHAS]);
    const started = performance.now();
    const { predictions } = await predict(signature, payload);
    const images = signature === "edit_like" ? predictions.map((p) => p.images) : predictions;
    draw(after, images[0]);
    $("after-caption").textContent = `after: ${caption()}, α ${alpha.toFixed(2)}`;
    const strip = $("strip");
    strip.textContent = "";
    STRIP_ALPHAS.forEach((a, k) => {
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      draw(canvas, images[k + 1]);
      const label = document.createElement("figcaption");
      label.textContent = `α ${a}`;
      figure.append(canvas, label);
      strip.append(figure);
    });
    const link = $("download");
    link.href = after.toDataURL("image/png");
    link.hidden = false;
    after.dataset.alpha = String(alpha);
    after.dataset.state = "done";
    setStatus(`Edited (${caption()}) in ${Math.round(performance.now() - started)} ms.`);
  } catch (error) {
    after.dataset.state = "error";
    setStatus(error.message, true);
  }
}

// One edit at a time; while one runs, the latest request waits (slider moves coalesce).
function scheduleEdit() {
  if (state.running) { state.again = true; return; }
  state.running = true;
  runEdits().finally(() => {
    state.running = false;
    if (state.again) { state.again = false; scheduleEdit(); }
  });
}

function wireDrop(zone, input, onImage) {
  const take = async (file) => {
    if (!file) return;
    try { await onImage(await readImage(file)); } catch (error) { setStatus(error.message, true); }
  };
  input.addEventListener("change", () => take(input.files[0]));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    take(event.dataTransfer.files[0]);
  });
}

function init() {
  wireDrop($("photo-drop"), $("photo"), setPhoto);
  wireDrop($("reference-drop"), $("reference"), setReference);
  $("alpha").addEventListener("input", () => {
    $("alpha-value").textContent = Number($("alpha").value).toFixed(2);
    scheduleEdit();
  });
  document.querySelectorAll('input[name="mode"]').forEach((radio) => radio.addEventListener("change", () => {
    const like = mode() === "like";
    $("reference-drop").hidden = !like;
    $("targets").hidden = like;
    scheduleEdit();
  }));
  loadModels().catch((error) => setStatus(error.message, true));
}

init();
