// profiles.js: the connection profiles, added and edited in a form that
// is checked before it is written (PUT api/v1/config/profiles/{name}).
import { html, useState, useEffect } from "./lib.js";
import { api, APIError, seg } from "./api.js";
import { Dialog, Field, Problems, Options, splitList, joinList, listOut, setKey } from "./ui.js";
import { list } from "./format.js";

export function ProfilesPage({ st }) {
  const [cfg, setCfg] = useState(null);
  const [error, setError] = useState("");
  const [status, setStatus] = useState("");
  const [editing, setEditing] = useState(null); // {item} or {item: null} for a new one

  async function load() {
    try {
      setCfg(await api("GET", "config"));
      setError("");
    } catch (e) {
      setError(e.message);
    }
  }
  useEffect(() => {
    load();
  }, []);

  async function del(name) {
    if (!window.confirm(`Delete the profile ${name}? Rules that use it will no longer check.`)) return;
    setError("");
    try {
      await api("DELETE", `config/profiles/${seg(name)}`, { version: cfg && cfg.version });
      setStatus(`Profile ${name} deleted.`);
      await load();
    } catch (e) {
      const errs = e instanceof APIError && e.body && e.body.errors;
      setError(errs ? errs.map((x) => `${x.file || ""}${x.line ? ":" + x.line : ""} ${x.message}`).join("; ") : e.message);
    }
  }

  const live = new Map(((st.status && st.status.profiles) || []).filter((p) => !p.via && !p.retired).map((p) => [p.name, p]));
  const items = (cfg && cfg.profiles.items) || [];
  const canAdd = items.some((i) => i.editable) || (cfg && cfg.rules.file);
  return html`<section id="profiles" aria-labelledby="profiles-h">
    <h2 id="profiles-h" tabindex="-1">Connection profiles</h2>
    <p class="error" role="alert" aria-live="assertive">${error}</p>
    <p id="profiles-status" aria-live="polite">${status}</p>
    ${cfg && html`
    <div class="scroll" role="region" aria-label="Profiles table" tabindex="0">
    <table class="cards">
      <thead><tr>
        <th scope="col">Name</th><th scope="col">Host</th><th scope="col">User</th><th scope="col">Keys</th>
        <th scope="col">Proxy / jump</th><th scope="col">Host keys</th><th scope="col">Connections</th>
        <th scope="col">File</th><th scope="col"><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody>
      ${items.length === 0 && html`<tr><td colspan="9" class="empty">No profile yet.</td></tr>`}
      ${items.map((it) => {
        const p = it.profile;
        const s = live.get(p.name);
        return html`<tr key=${p.name} data-profile-name=${p.name}>
          <th scope="row" data-label="Name">${p.name}${s && html` <span class=${"badge state-" + s.state}>${s.state}</span>`}</th>
          <td data-label="Host"><code>${list(p.host)}${p.port ? ":" + p.port : ""}</code></td>
          <td data-label="User">${p.user}</td>
          <td data-label="Keys">${list(p.identity_files)}</td>
          <td data-label="Proxy / jump">${[p.proxy, p.jump && "jump " + p.jump].filter(Boolean).join(", ")}</td>
          <td data-label="Host keys">${p.host_key_policy || "strict"}${p.known_hosts && html` <small>${list(p.known_hosts)}</small>`}</td>
          <td data-label="Connections">${p.connections || 1}</td>
          <td data-label="File"><code class="path">${it.file}</code></td>
          <td data-label="Actions" class="actions">
            ${it.editable
              ? html`<button type="button" class="secondary" aria-label=${"Edit " + p.name} onClick=${() => setEditing({ item: it })}>Edit</button>
                <button type="button" class="danger" aria-label=${"Delete " + p.name} onClick=${() => del(p.name)}>Delete</button>`
              : html`<small class="muted">read only</small>`}
          </td>
        </tr>`;
      })}
      </tbody>
    </table>
    </div>
    ${canAdd && html`<div class="buttons"><button type="button" id="add-profile" onClick=${() => setEditing({ item: null })}>Add profile</button></div>`}
    `}
    ${editing && html`<${ProfileEditor} item=${editing.item} names=${items.map((i) => i.profile.name)} version=${cfg && cfg.version}
      onCancel=${() => setEditing(null)}
      onSaved=${(name) => {
        setEditing(null);
        setStatus(`Profile ${name} saved and reloaded.`);
        load();
      }} />`}
  </section>`;
}

function ProfileEditor({ item, names, version, onCancel, onSaved }) {
  const orig = item ? item.profile : {};
  const [result, setResult] = useState(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  function read(form) {
    const f = form.elements;
    const p = { ...orig };
    setKey(p, "name", f.name.value.trim());
    setKey(p, "host", listOut(splitList(f.host.value), orig.host === undefined ? "" : orig.host));
    setKey(p, "port", f.port.value ? Number(f.port.value) : undefined);
    setKey(p, "user", f.user.value.trim());
    setKey(p, "identity_files", listOut(splitList(f.identity_files.value), orig.identity_files));
    setKey(p, "proxy", f.proxy.value.trim());
    setKey(p, "jump", f.jump.value.trim());
    setKey(p, "host_key_policy", f.host_key_policy.value);
    setKey(p, "known_hosts", listOut(splitList(f.known_hosts.value), orig.known_hosts));
    setKey(p, "connections", f.connections.value ? Number(f.connections.value) : undefined);
    return p;
  }

  async function go(form, save) {
    const p = read(form);
    setError("");
    setResult(null);
    if (!p.name) {
      setError("A profile needs a name.");
      return;
    }
    if (!item && names.includes(p.name)) {
      setError(`A profile named ${p.name} exists already: edit that one, or choose another name.`);
      return;
    }
    setBusy(true);
    try {
      const r = save
        ? await api("PUT", `config/profiles/${seg(item ? item.profile.name : p.name)}`, { ...p, version })
        : await api("POST", "config/check", item ? { profile: p, old_name: item.profile.name, version } : { profile: p, version });
      setResult(r);
      if (save && r.ok !== false) onSaved(p.name);
    } catch (e) {
      if (e instanceof APIError && e.body && e.body.errors) setResult(e.body);
      else setError(e.message);
    } finally {
      setBusy(false);
    }
  }

  const submit = (e) => {
    e.preventDefault();
    go(e.currentTarget, true);
  };
  const check = (e) => go(e.currentTarget.form, false);
  return html`<${Dialog} id="profile-editor" title=${item ? "Edit profile " + orig.name : "Add profile"} onClose=${onCancel}>
    <form class="editor" onSubmit=${submit}>
      <div class="row">
        <${Field} id="profile-name" label="Name" hint=${item ? "a profile keeps its name; add a new one to rename" : ""}>
          <input id="profile-name" name="name" required defaultValue=${orig.name || ""} readonly=${!!item} />
        <//>
        <${Field} id="profile-user" label="User"><input id="profile-user" name="user" defaultValue=${orig.user || ""} autocomplete="off" /><//>
      </div>
      <div class="row">
        <${Field} id="profile-host" label="Host" hint="the SSH server; several, one per line, are tried in order">
          <textarea id="profile-host" name="host" rows="1" required aria-describedby="profile-host-hint" defaultValue=${joinList(orig.host)}></textarea>
        <//>
        <${Field} id="profile-port" label="Port"><input id="profile-port" name="port" type="number" min="1" max="65535" placeholder="22" defaultValue=${orig.port || ""} /><//>
      </div>
      <${Field} id="profile-identity_files" label="Identity files (keys)" hint="paths of private keys, one per line">
        <textarea id="profile-identity_files" name="identity_files" rows="2" aria-describedby="profile-identity_files-hint" defaultValue=${joinList(orig.identity_files)}></textarea>
      <//>
      <div class="row">
        <${Field} id="profile-proxy" label="Proxy" hint="socks5://host:port or http://host:port">
          <input id="profile-proxy" name="proxy" defaultValue=${orig.proxy || ""} aria-describedby="profile-proxy-hint" />
        <//>
        <${Field} id="profile-jump" label="Jump profile" hint="the profile to reach this server through">
          <input id="profile-jump" name="jump" list="profile-names" defaultValue=${orig.jump || ""} aria-describedby="profile-jump-hint" />
          <datalist id="profile-names">${names.map((n) => html`<option value=${n} />`)}</datalist>
        <//>
      </div>
      <div class="row">
        <${Field} id="profile-host_key_policy" label="Unknown host keys">
          <select id="profile-host_key_policy" name="host_key_policy">
            ${Options([["", "default (strict)"], ["strict", "strict: refuse"], ["accept-new", "accept-new: record it"], ["ask", "ask: a prompt in the console"]], orig.host_key_policy || "")}
          </select>
        <//>
        <${Field} id="profile-connections" label="Connections">
          <input id="profile-connections" name="connections" type="number" min="1" max="64" placeholder="1" defaultValue=${orig.connections || ""} />
        <//>
      </div>
      <${Field} id="profile-known_hosts" label="Known hosts files" hint="one per line; empty: ~/.ssh/known_hosts">
        <textarea id="profile-known_hosts" name="known_hosts" rows="1" aria-describedby="profile-known_hosts-hint" defaultValue=${joinList(orig.known_hosts)}></textarea>
      <//>
      <p class="error" role="alert" aria-live="assertive">${error}</p>
      ${result && html`<${Problems} id="profile-problems" errors=${result.errors} warnings=${result.warnings} />`}
      ${result && result.ok && html`<p class="ok" aria-live="polite">No errors.</p>`}
      <div class="buttons">
        <button type="submit" disabled=${busy}>Save</button>
        <button type="button" class="secondary" disabled=${busy} onClick=${check}>Check</button>
        <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
      </div>
    </form>
  <//>`;
}
