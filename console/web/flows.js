// flows.js: the live flow table, kept current by the event stream.
import { html, useState } from "./lib.js";
import { bytes, rate, age, basename } from "./format.js";

const sorts = {
  age: (a, b) => Date.parse(a.flow.started) - Date.parse(b.flow.started),
  bytes: (a, b) => b.flow.sent + b.flow.received - (a.flow.sent + a.flow.received),
  rate: (a, b) => b.rateSent + b.rateReceived - (a.rateSent + a.rateReceived),
  destination: (a, b) => dest(a.flow).localeCompare(dest(b.flow)),
  application: (a, b) => basename(a.flow.app).localeCompare(basename(b.flow.app)),
};

function dest(f) {
  return (f.host || f.name || "") + " " + f.dst;
}

function matches(e, q) {
  if (!q) return true;
  const f = e.flow;
  const hay = [f.app, f.dst, f.name, f.host, f.src, f.rule, f.profile, f.action, f.via, f.uid >= 0 ? "uid " + f.uid : ""]
    .join(" ")
    .toLowerCase();
  return q
    .toLowerCase()
    .split(/\s+/)
    .every((w) => hay.includes(w));
}

export function FlowsPage({ store, st, now }) {
  const [q, setQ] = useState("");
  const [sort, setSort] = useState("age");
  const [error, setError] = useState("");
  const all = [...st.flows.values()];
  const shown = all.filter((e) => matches(e, q)).sort(sorts[sort]);
  const open = all.filter((e) => e.flow.state !== "closed").length;

  async function close(id) {
    setError("");
    try {
      await store.closeFlow(id);
    } catch (e) {
      setError(`close flow ${id}: ${e.message}`);
    }
  }

  return html`<section id="flows" aria-labelledby="flows-h">
    <h2 id="flows-h" tabindex="-1">Live flows</h2>
    <div class="toolbar">
      <div class="field">
        <label for="flow-filter">Filter</label>
        <input id="flow-filter" type="search" value=${q} placeholder="application, host, rule…"
          onInput=${(e) => setQ(e.currentTarget.value)} />
      </div>
      <div class="field">
        <label for="flow-sort">Sort by</label>
        <select id="flow-sort" value=${sort} onChange=${(e) => setSort(e.currentTarget.value)}>
          <option value="age">age</option>
          <option value="bytes">bytes</option>
          <option value="rate">rate</option>
          <option value="destination">destination</option>
          <option value="application">application</option>
        </select>
      </div>
      <p id="flow-count" aria-live="polite" class="count">
        ${open} open ${open === 1 ? "flow" : "flows"}${shown.length !== all.length ? `, ${shown.length} shown` : ""}
        ${!st.live && html` <span class="badge off">stream disconnected</span>`}
      </p>
    </div>
    <p class="error" role="alert" aria-live="assertive">${error}</p>
    <div class="scroll" role="region" aria-label="Flows table" tabindex="0">
    <table class="cards flows">
      <thead><tr>
        <th scope="col">Application</th><th scope="col">User</th><th scope="col">Destination</th>
        <th scope="col">Rule</th><th scope="col">Profile</th><th scope="col" class="num">Sent</th>
        <th scope="col" class="num">Received</th><th scope="col" class="num">Rate ↑/↓</th>
        <th scope="col" class="num">Age</th><th scope="col"><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody>
      ${shown.length === 0 && html`<tr><td colspan="10" class="empty">${all.length ? "No flow matches the filter." : "No flow."}</td></tr>`}
      ${shown.map((e) => {
        const f = e.flow;
        const closed = f.state === "closed";
        return html`<tr key=${f.id} data-flow-id=${f.id} data-flow-state=${f.state} class=${closed ? "closed" : ""}>
          <td data-label="Application" title=${f.app}>${basename(f.app) || html`<span class="muted">unknown</span>`}
            ${f.via && html` <small>via ${f.via}</small>`}</td>
          <td data-label="User">${f.uid >= 0 ? f.uid : ""}</td>
          <td data-label="Destination"><code>${f.dst}</code>${(f.host || f.name) && html` <small>${f.host || f.name}</small>`}</td>
          <td data-label="Rule">${f.rule || html`<span class="muted">none</span>`}</td>
          <td data-label="Profile"><span class=${"badge action-" + f.action}>${f.action}</span> ${f.profile}</td>
          <td data-label="Sent" class="num sent">${bytes(f.sent)}</td>
          <td data-label="Received" class="num received">${bytes(f.received)}</td>
          <td data-label="Rate" class="num rate">${closed ? (e.reason || "closed") : `${rate(e.rateSent)} / ${rate(e.rateReceived)}`}</td>
          <td data-label="Age" class="num">${age(f.started, now)}</td>
          <td data-label="Actions" class="actions">
            <button type="button" class="close-flow secondary" disabled=${closed}
              aria-label=${`Close flow ${f.id} to ${f.host || f.name || f.dst}`} onClick=${() => close(f.id)}>Close</button>
          </td>
        </tr>`;
      })}
      </tbody>
    </table>
    </div>
  </section>`;
}
