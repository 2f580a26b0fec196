// ui.js: small components the pages share.
import { html, useEffect, useRef } from "./lib.js";

// Dialog is a modal <dialog>: it takes focus when it opens, Escape
// closes it, and focus goes back to what had it before.
export function Dialog({ title, onClose, children, id }) {
  const ref = useRef(null);
  const titleId = (id || "dialog") + "-title";
  useEffect(() => {
    const back = document.activeElement;
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const first = d && d.querySelector("input:not([type=hidden]), select, textarea, button");
    if (first) first.focus();
    return () => {
      if (d && d.open) d.close();
      if (back && back.isConnected && back.focus) back.focus();
    };
  }, []);
  const cancel = (e) => {
    e.preventDefault();
    onClose();
  };
  return html`<dialog ref=${ref} id=${id} aria-labelledby=${titleId} onCancel=${cancel}>
    <div class="dialog-head">
      <h3 id=${titleId}>${title}</h3>
      <button type="button" class="icon" aria-label="Close dialog" onClick=${onClose}>×</button>
    </div>
    ${children}
  </dialog>`;
}

// Problems lists errors (with file:line) and warnings, announced as they
// change.
export function Problems({ errors, warnings, id }) {
  const es = errors || [];
  const ws = warnings || [];
  return html`<div class="problems" id=${id} aria-live="polite">
    ${es.length > 0 &&
    html`<ul class="errors" role="alert">
      ${es.map((e) => html`<li>${where(e)}${msg(e)}</li>`)}
    </ul>`}
    ${ws.length > 0 &&
    html`<ul class="warnings">
      ${ws.map((w) => html`<li>${where(w)}${msg(w)}</li>`)}
    </ul>`}
  </div>`;
}

function where(e) {
  if (!e || typeof e !== "object" || !e.file) return "";
  return html`<code class="where">${e.file}${e.line ? ":" + e.line : ""}</code>${" "}`;
}

function msg(e) {
  if (typeof e === "string") return e;
  return e.message || JSON.stringify(e);
}

// Field is a labelled input, select or textarea.
export function Field({ label, hint, children, id }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${children}
    ${hint && html`<small id=${id + "-hint"} class="hint">${hint}</small>`}
  </div>`;
}

// splitList reads a list typed one per line or comma separated.
export function splitList(s) {
  return String(s || "")
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter((x) => x !== "");
}

// joinList shows a list for editing, one per line.
export function joinList(v) {
  if (v === undefined || v === null) return "";
  return Array.isArray(v) ? v.join("\n") : String(v);
}

// listOut gives back a list in the shape the original had: a single
// string stays one when it is still one value.
export function listOut(values, original) {
  if (values.length === 0) return undefined;
  if (values.length === 1 && original !== undefined && !Array.isArray(original)) return values[0];
  return values;
}

// setKey sets obj[k], or deletes it when v is empty, so that absent keys
// stay absent.
export function setKey(obj, k, v) {
  if (v === undefined || v === null || v === "" || v === false || (Array.isArray(v) && v.length === 0)) delete obj[k];
  else obj[k] = v;
}

// Options are a select's options, the current one selected when the
// select is first drawn (the select is then the user's).
export function Options(pairs, current) {
  return pairs.map(([v, label]) => html`<option value=${v} defaultSelected=${v === current}>${label}</option>`);
}
