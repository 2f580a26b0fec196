// overview.js: capture, the profiles' connections, pending prompts.
import { html, useState } from "./lib.js";
import { api, seg } from "./api.js";
import { PromptList } from "./prompts.js";
import { bytes, age } from "./format.js";

export function OverviewPage({ store, st, now }) {
  const s = st.status;
  const [error, setError] = useState("");
  const [busy, setBusy] = useState("");

  async function act(name, what) {
    setBusy(name + what);
    setError("");
    try {
      await api("POST", `profiles/${seg(name)}/${what}`, {});
    } catch (e) {
      setError(`${what} ${name}: ${e.message}`);
    } finally {
      setBusy("");
    }
  }

  const open = [...st.flows.values()].filter((f) => f.flow.state !== "closed").length;
  return html`<section id="overview" aria-labelledby="overview-h">
    <h2 id="overview-h" tabindex="-1">Overview</h2>
    ${st.prompts.length > 0 &&
    html`<div class="pending" aria-labelledby="pending-h">
      <h3 id="pending-h">Waiting for you</h3>
      <${PromptList} store=${store} prompts=${st.prompts} now=${now} />
    </div>`}
    ${!s
      ? html`<p class="muted">Loading…</p>`
      : html`
      <div class="summary">
        <div class="card stat" id="capture-state" data-capture=${s.capture ? "on" : "off"}>
          <span class="label">Capture</span>
          <span class=${"badge " + (s.capture ? "ok" : "off")}>${s.capture ? "on" : "off"}</span>
          ${s.no_tun && html`<small class="hint">no TUN: only the listeners</small>`}
        </div>
        <div class="card stat">
          <span class="label">Flows</span>
          <a href="#flows" class="big">${open}</a>
        </div>
        ${s.dns &&
        html`<div class="card stat">
          <span class="label">DNS</span>
          <span>${s.dns.mode}</span>
          <small class="hint">${s.dns.names} names, ${s.dns.queries ? s.dns.queries.fake + s.dns.queries.forwarded + s.dns.queries.through : 0} queries</small>
        </div>`}
      </div>
      <p class="error" role="alert" aria-live="assertive">${error}</p>
      <h3>Profiles</h3>
      <div class="scroll" role="region" aria-label="Profiles" tabindex="0">
      <table class="cards" id="profile-states">
        <thead><tr>
          <th scope="col">Profile</th><th scope="col">State</th><th scope="col">Server</th>
          <th scope="col">Channels</th><th scope="col">Sent</th><th scope="col">Received</th>
          <th scope="col">Last error</th><th scope="col"><span class="sr-only">Actions</span></th>
        </tr></thead>
        <tbody>
        ${(s.profiles || []).length === 0 && html`<tr><td colspan="8" class="empty">No profile.</td></tr>`}
        ${(s.profiles || []).map((p) => html`<tr key=${p.name + "|" + (p.via || "") + (p.retired ? "|r" : "")}
            data-profile=${p.name} data-state=${p.state} data-received=${p.received}>
          <th scope="row" data-label="Profile">${p.name}${p.via && html` <small>via ${p.via}</small>`}${p.retired && html` <small>(retired)</small>`}</th>
          <td data-label="State"><span class=${"badge state-" + p.state}>${p.state}</span>
            ${p.since && html` <small class="muted">${age(p.since, now)}</small>`}</td>
          <td data-label="Server"><code>${p.server}</code>${p.route && p.route !== "direct" && html` <small>${p.route}</small>`}</td>
          <td data-label="Channels">${p.channels} <small class="muted">on ${p.connections} conn.</small></td>
          <td data-label="Sent">${bytes(p.sent)}</td>
          <td data-label="Received">${bytes(p.received)}</td>
          <td data-label="Last error" class="err-cell">${p.error}</td>
          <td data-label="Actions" class="actions">
            ${!p.via && !p.retired && html`
            <button type="button" disabled=${busy !== "" || p.state === "connected"}
              aria-label=${"Connect " + p.name} onClick=${() => act(p.name, "connect")}>Connect</button>
            <button type="button" class="secondary" disabled=${busy !== "" || p.state === "idle"}
              aria-label=${"Disconnect " + p.name} onClick=${() => act(p.name, "disconnect")}>Disconnect</button>`}
          </td>
        </tr>`)}
        </tbody>
      </table>
      </div>
      ${(s.listeners || []).length > 0 &&
      html`<h3>Listeners</h3>
      <ul class="listeners">
        ${s.listeners.map((l) => html`<li><strong>${l.kind}</strong> <code>${l.listen}</code>
          ${l.destination && html` → <code>${l.destination}</code> via ${l.profile}`}
          <span class="muted"> · ${l.clients} clients${l.denied ? `, ${l.denied} denied` : ""}</span></li>`)}
      </ul>`}
    `}
  </section>`;
}
