// rules.js: the ordered filter rules, their editor, and the explain box.
//
// The page edits a list of items, each either an unchanged rule of the
// file ({keep: i}, so its comments stay) or new content ({rule: {...}}).
// Check sends that list to api/v1/config/check and shows what is wrong,
// with file:line, before anything is written; Save sends it to
// api/v1/config/rules, which checks again and writes only when it is ok.
import { html, useState, useEffect, useLayoutEffect, useRef } from "./lib.js";
import { api, APIError } from "./api.js";
import { Dialog, Field, Problems, Options as options3, splitList, joinList, listOut, setKey } from "./ui.js";
import { list } from "./format.js";

let nextKey = 1;

function fromConfig(cfg) {
  return (cfg.rules.items || []).map((rule, i) => ({ key: nextKey++, keep: i, rule, edited: false }));
}

// An edited rule of the file is sent with its index too ({keep: i, rule}),
// so that the fields it keeps keep their comments.
export function itemsBody(items) {
  return items.map((it) => (it.edited ? (it.keep === undefined ? { rule: it.rule } : { keep: it.keep, rule: it.rule }) : { keep: it.keep }));
}

export function RulesPage({ st }) {
  const [cfg, setCfg] = useState(null);
  const [items, setItems] = useState([]);
  const [dirty, setDirty] = useState(false);
  const [result, setResult] = useState(null); // the last check or save answer
  const [shadowed, setShadowed] = useState([]);
  const [error, setError] = useState("");
  const [status, setStatus] = useState("");
  const [busy, setBusy] = useState(false);
  const [editing, setEditing] = useState(null); // {index, rule} or {index: -1}
  const focusAfter = useRef(null);

  async function load() {
    try {
      const c = await api("GET", "config");
      setCfg(c);
      setItems(fromConfig(c));
      setShadowed(c.shadowed || []);
      setDirty(false);
      setResult(null);
      setError("");
    } catch (e) {
      setError(e.message);
    }
  }
  useEffect(() => {
    load();
  }, []);

  // Keep focus on the moved rule's button, so that moving is a key press
  // after another. A layout effect: before the browser draws, and before
  // the moved (and maybe now disabled) button loses the focus.
  useLayoutEffect(() => {
    const f = focusAfter.current;
    if (!f) return;
    focusAfter.current = null;
    const row = document.querySelector(`#rules tr[data-key="${f.key}"]`);
    if (!row) return;
    let b = row.querySelector(f.sel);
    if (!b || b.disabled) b = row.querySelector("button.move-up:not([disabled]), button.move-down:not([disabled])");
    if (b) b.focus();
  });

  function change(next, note) {
    setItems(next);
    setDirty(true);
    setShadowed([]);
    setResult(null);
    setStatus(note || "");
  }

  function move(i, d) {
    const j = i + d;
    if (j < 0 || j >= items.length) return;
    const next = [...items];
    [next[i], next[j]] = [next[j], next[i]];
    focusAfter.current = { key: items[i].key, sel: d < 0 ? "button.move-up" : "button.move-down" };
    change(next, `Rule ${ruleName(items[i].rule, i)} moved to position ${j + 1}. Not saved yet.`);
  }

  function remove(i) {
    const next = items.filter((_, k) => k !== i);
    change(next, `Rule ${ruleName(items[i].rule, i)} deleted. Not saved yet.`);
    const row = document.querySelectorAll("#rules tr[data-rule-index]")[i + 1] || document.querySelectorAll("#rules tr[data-rule-index]")[i - 1];
    if (row) focusAfter.current = { key: row.dataset.key, sel: "button.edit" };
  }

  function saveEdit(rule) {
    const next = [...items];
    if (editing.index < 0) next.push({ key: nextKey++, rule, edited: true });
    else next[editing.index] = { ...next[editing.index], rule, edited: true };
    setEditing(null);
    change(next, "Rule changed. Not saved yet.");
  }

  async function send(method, path) {
    setBusy(true);
    setError("");
    setStatus("");
    try {
      // version: the server refuses the edit (409) when the file
      // changed since the page read it.
      const r = await api(method, path, { rules: itemsBody(items), version: cfg && cfg.version });
      setResult(r);
      setShadowed(r.shadowed || []);
      if (method === "PUT" && r.ok !== false) {
        await load();
        setResult(r);
        setStatus("Saved and reloaded.");
      } else {
        setStatus(r.ok ? "No errors: the rules can be saved." : "The check found errors: fix them before saving.");
      }
    } catch (e) {
      if (e instanceof APIError && e.body && e.body.errors) {
        setResult(e.body);
        setShadowed(e.body.shadowed || []);
        setStatus("Not saved: fix the errors below.");
      } else setError(e.message);
    } finally {
      setBusy(false);
    }
  }

  const editable = cfg && cfg.rules.editable;
  const profiles = cfg ? (cfg.profiles.items || []).map((p) => p.profile.name) : [];
  return html`<section id="rules" aria-labelledby="rules-h">
    <h2 id="rules-h" tabindex="-1">Filter rules</h2>
    <p class="muted">The first rule that matches decides a flow: place the most specific rules first.</p>
    ${cfg && html`<p class="file">${cfg.rules.file ? html`In <code>${cfg.rules.file}</code>` : "No file holds rules yet."}</p>`}
    ${cfg && !editable && html`<p class="readonly" id="rules-readonly" role="note">Read only: ${cfg.rules.why_not}</p>`}
    <p class="error" role="alert" aria-live="assertive">${error}</p>
    ${cfg && html`
    <div class="scroll" role="region" aria-label="Rules table" tabindex="0">
    <table class="cards rules-table">
      <thead><tr>
        <th scope="col">#</th><th scope="col">Name</th><th scope="col">Destinations</th><th scope="col">Ports</th>
        <th scope="col">Applications</th><th scope="col">Users</th><th scope="col">Sources</th>
        <th scope="col">Action</th><th scope="col">Options</th>
        ${editable && html`<th scope="col"><span class="sr-only">Edit</span></th>`}
      </tr></thead>
      <tbody>
      ${items.length === 0 && html`<tr><td colspan="10" class="empty">No rule: every captured flow goes direct.</td></tr>`}
      ${items.map((it, i) => {
        const r = it.rule;
        const sh = shadowed.filter((s) => s.index === i);
        const label = ruleName(r, i);
        return html`<tr key=${it.key} data-key=${it.key} data-rule-index=${i} class=${(it.edited ? "edited " : "") + (sh.length ? "shadowed" : "")}>
          <td data-label="#">${i + 1}</td>
          <th scope="row" data-label="Name">${r.name || html`<span class="muted">unnamed</span>`}
            ${it.edited && html` <small class="badge">changed</small>`}
            ${sh.map((s) => html`<p class="shadow-warning" role="note">⚠ ${s.message || `rule ${s.by + 1} matches every flow this one would`}</p>`)}</th>
          <td data-label="Destinations">${list(r.destinations) || anyOf()}</td>
          <td data-label="Ports">${list(r.ports) || anyOf()}</td>
          <td data-label="Applications">${list(r.applications) || anyOf()}</td>
          <td data-label="Users">${list(r.users) || anyOf()}</td>
          <td data-label="Sources">${list(r.sources) || html`<span class="muted">this host</span>`}</td>
          <td data-label="Action"><span class=${"badge action-" + r.action}>${r.action}</span>${r.profile && html` ${r.profile}`}</td>
          <td data-label="Options">${options(r)}</td>
          ${editable && html`<td data-label="Edit" class="actions">
            <button type="button" class="move-up secondary" disabled=${busy || i === 0}
              aria-label=${"Move up " + label} onClick=${() => move(i, -1)}>Move up</button>
            <button type="button" class="move-down secondary" disabled=${busy || i === items.length - 1}
              aria-label=${"Move down " + label} onClick=${() => move(i, 1)}>Move down</button>
            <button type="button" class="edit secondary" aria-label=${"Edit " + label}
              onClick=${() => setEditing({ index: i, rule: r })}>Edit</button>
            <button type="button" class="delete danger" aria-label=${"Delete " + label} onClick=${() => remove(i)}>Delete</button>
          </td>`}
        </tr>`;
      })}
      </tbody>
    </table>
    </div>
    ${editable && html`<div class="buttons">
      <button type="button" id="add-rule" onClick=${() => setEditing({ index: -1, rule: { action: "tunnel" } })}>Add rule</button>
      <button type="button" id="check-rules" class="secondary" disabled=${busy} onClick=${() => send("POST", "config/check")}>Check</button>
      <button type="button" id="save-rules" disabled=${busy || !dirty} onClick=${() => send("PUT", "config/rules")}>Save</button>
      ${dirty && html`<button type="button" class="secondary" disabled=${busy} onClick=${load}>Undo changes</button>`}
    </div>`}
    <p id="rules-status" aria-live="polite">${status}</p>
    ${result && html`<${Problems} id="rules-problems" errors=${result.errors} warnings=${result.warnings} />`}
    ${result && result.yaml && html`<details><summary>The file as it would be written</summary><pre class="yaml">${result.yaml}</pre></details>`}
    `}
    ${editing && html`<${RuleEditor} rule=${editing.rule} isNew=${editing.index < 0} profiles=${profiles}
      onCancel=${() => setEditing(null)} onDone=${saveEdit} />`}
    <${ExplainBox} st=${st} />
  </section>`;
}

function anyOf() {
  return html`<span class="muted">any</span>`;
}

function ruleName(r, i) {
  return r.name ? `#${i + 1} "${r.name}"` : `#${i + 1}`;
}

function options(r) {
  const o = [];
  if (r.host_from_application) o.push("host from application");
  if (r.fallback_direct) o.push("fallback direct");
  if (r.on_tunnel_down) o.push("on tunnel down: " + r.on_tunnel_down);
  return o.join(", ");
}

// ports reads "22, 8000-8080" as [22, "8000-8080"].
function portsOut(s, original) {
  const v = splitList(s).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  return listOut(v, original);
}

function RuleEditor({ rule, isNew, profiles, onCancel, onDone }) {
  const submit = (e) => {
    e.preventDefault();
    const f = e.currentTarget.elements;
    const r = { ...rule };
    setKey(r, "name", f.name.value.trim());
    setKey(r, "destinations", listOut(splitList(f.destinations.value), rule.destinations));
    setKey(r, "ports", portsOut(f.ports.value, rule.ports));
    setKey(r, "applications", listOut(splitList(f.applications.value), rule.applications));
    setKey(r, "users", listOut(splitList(f.users.value), rule.users));
    setKey(r, "sources", listOut(splitList(f.sources.value), rule.sources));
    setKey(r, "action", f.action.value);
    setKey(r, "profile", f.action.value === "tunnel" ? f.profile.value.trim() : "");
    setKey(r, "host_from_application", f.host_from_application.checked);
    setKey(r, "fallback_direct", f.fallback_direct.checked);
    setKey(r, "on_tunnel_down", f.on_tunnel_down.value);
    onDone(r);
  };
  const ta = (name, label, hint, v) => html`<${Field} id=${"rule-" + name} label=${label} hint=${hint}>
    <textarea id=${"rule-" + name} name=${name} rows="2" aria-describedby=${"rule-" + name + "-hint"} defaultValue=${joinList(v)}></textarea>
  <//>`;
  return html`<${Dialog} id="rule-editor" title=${isNew ? "Add rule" : "Edit rule"} onClose=${onCancel}>
    <form class="editor" onSubmit=${submit}>
      <${Field} id="rule-name" label="Name"><input id="rule-name" name="name" defaultValue=${rule.name || ""} /><//>
      ${ta("destinations", "Destinations", "host names, *.domains, addresses or networks; one per line or comma separated; empty: any", rule.destinations)}
      ${ta("ports", "Ports", "numbers or ranges like 8000-8080; empty: any", rule.ports)}
      ${ta("applications", "Applications", "executable paths or names; empty: any", rule.applications)}
      ${ta("users", "Users", "user names or uids; empty: any", rule.users)}
      ${ta("sources", "Sources", "client addresses or networks (a gateway's LAN); empty: this host", rule.sources)}
      <div class="row">
        <${Field} id="rule-action" label="Action">
          <select id="rule-action" name="action">
            ${options3([["tunnel", "tunnel"], ["direct", "direct"], ["block", "block"]], rule.action || "tunnel")}
          </select>
        <//>
        <${Field} id="rule-profile" label="Profile" hint="for tunnel">
          <input id="rule-profile" name="profile" list="rule-profiles" defaultValue=${rule.profile || ""} aria-describedby="rule-profile-hint" />
          <datalist id="rule-profiles">${profiles.map((p) => html`<option value=${p} />`)}</datalist>
        <//>
        <${Field} id="rule-otd" label="On tunnel down">
          <select id="rule-otd" name="on_tunnel_down">
            ${options3([["", "default (block)"], ["block", "block"], ["direct", "direct"]], rule.on_tunnel_down || "")}
          </select>
        <//>
      </div>
      <div class="checks">
        <label><input type="checkbox" name="host_from_application" defaultChecked=${!!rule.host_from_application} /> Use host name from the application</label>
        <label><input type="checkbox" name="fallback_direct" defaultChecked=${!!rule.fallback_direct} /> Fall back to direct</label>
      </div>
      <div class="buttons">
        <button type="submit">${isNew ? "Add" : "Apply"}</button>
        <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
      </div>
      <p class="hint">The change is checked, and written only when you Save.</p>
    </form>
  <//>`;
}

// ExplainBox asks shunt what it would do with a flow, as `shunt explain`.
function ExplainBox() {
  const [res, setRes] = useState(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function submit(e) {
    e.preventDefault();
    const f = e.currentTarget.elements;
    const body = { destination: f.destination.value.trim() };
    if (f.application.value.trim()) body.application = f.application.value.trim();
    if (f.user.value.trim()) body.user = f.user.value.trim();
    if (f.from.value.trim()) body.from = f.from.value.trim();
    setBusy(true);
    setError("");
    try {
      setRes(await api("POST", "explain", body));
    } catch (err) {
      setRes(null);
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  return html`<div class="card explain" id="explain" aria-labelledby="explain-h">
    <h3 id="explain-h">Explain a flow</h3>
    <form onSubmit=${submit} class="row">
      <${Field} id="explain-destination" label="Destination (host:port)">
        <input id="explain-destination" name="destination" required placeholder="git.example.com:22" />
      <//>
      <${Field} id="explain-application" label="Application (optional)">
        <input id="explain-application" name="application" placeholder="/usr/bin/curl" />
      <//>
      <${Field} id="explain-user" label="User (optional)"><input id="explain-user" name="user" /><//>
      <${Field} id="explain-from" label="From (optional)"><input id="explain-from" name="from" placeholder="192.168.50.7" /><//>
      <div class="field"><span class="label-space" aria-hidden="true"> </span><button type="submit" disabled=${busy}>Explain</button></div>
    </form>
    <p class="error" role="alert" aria-live="assertive">${error}</p>
    <div id="explain-result" aria-live="polite">${res && html`<${Explanation} x=${res} />`}</div>
  </div>`;
}

function Explanation({ x }) {
  const d = x.decision || {};
  const c = x.capture || {};
  return html`<div class="explanation">
    <p class="decision" data-action=${d.action}>
      <span class=${"badge action-" + d.action}>${d.action}</span>
      ${d.index > 0 ? html` by rule <strong>${d.rule || "#" + d.index}</strong>` : " (no rule matched)"}
      ${d.profile && html` through <strong>${d.profile}</strong>`}${d.server && html` (<code>${d.server}</code>)`}
    </p>
    ${d.why && html`<p>${d.why}</p>`}
    ${d.route && html`<p>Route: ${d.route}</p>`}
    ${d.tunnel_down && html`<p>When the tunnel is down: ${d.tunnel_down}</p>`}
    <p>Capture: ${c.captured ? "captured" : "not captured"}${c.device && ` by ${c.device}`}. ${c.why}</p>
    ${(x.steps || []).length > 0 && html`<ol class="steps">
      ${x.steps.map((s) => html`<li class=${s.matched ? "matched" : ""}><strong>${s.rule}</strong>: ${s.matched ? "matches" : "no"}. ${s.why}</li>`)}
    </ol>`}
    ${(x.notes || []).map((n) => html`<p class="hint">${n}</p>`)}
    ${(x.unresolved || []).map((u) => html`<p class="warning">${u.host}: ${u.error}</p>`)}
  </div>`;
}
