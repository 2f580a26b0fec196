// prompts.js: the questions connections wait on, answered in the page.
// An answer goes from the input straight into the request body: it is
// never kept in the page's state, and the field is cleared once sent.
import { html, useState } from "./lib.js";
import { api, seg } from "./api.js";
import { Dialog } from "./ui.js";
import { age } from "./format.js";

export function PromptList({ store, prompts, now }) {
  if (!prompts.length) return html`<p class="empty">No prompt is waiting.</p>`;
  return html`<ul class="prompt-list">
    ${prompts.map((p) => html`<li key=${p.id}><${PromptCard} store=${store} p=${p} now=${now} /></li>`)}
  </ul>`;
}

function PromptCard({ store, p, now }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [review, setReview] = useState(false);
  const inputId = "answer-" + p.id;

  async function send(answer, form) {
    setBusy(true);
    setError("");
    try {
      await api("POST", `prompts/${seg(p.id)}/answer`, { answer });
      if (form) form.reset();
      setReview(false);
      store.answered(p.id);
    } catch (e) {
      if (form) form.reset();
      setError(e.message);
    } finally {
      setBusy(false);
    }
  }

  const head = html`<div class="prompt-head">
    <strong>${kindLabel(p.kind)}</strong> for profile <strong>${p.profile}</strong>
    ${p.server && html` on <code>${p.server}</code>`}
    <span class="muted"> · ${age(p.created, now)} ago</span>
  </div>`;
  const err = html`<p class="error" role="alert" aria-live="assertive">${error}</p>`;

  if (p.kind === "host-key") {
    const submit = (e) => {
      e.preventDefault();
      const answer = e.submitter && e.submitter.value === "yes" ? "yes" : "no";
      send(answer, null);
    };
    return html`<div class="card prompt" data-prompt-kind=${p.kind}>
      ${head}
      <p>${p.message}</p>
      ${p.fingerprint && html`<p>Fingerprint: <code class="fingerprint">${p.fingerprint}</code></p>`}
      <button type="button" onClick=${() => setReview(true)}>Review host key</button>
      ${err}
      ${review &&
      html`<${Dialog} id=${"hostkey-" + p.id} title="Unknown host key" onClose=${() => setReview(false)}>
        <form data-prompt-id=${p.id} class="hostkey" onSubmit=${submit}>
          <p>${p.message}</p>
          <dl>
            <dt>Server</dt><dd><code>${p.server || p.profile}</code></dd>
            <dt>Fingerprint</dt><dd><code class="fingerprint">${p.fingerprint || "(not given)"}</code></dd>
            <dt>Line to write</dt><dd><pre class="known-hosts-line">${p.known_hosts_line || "(not given)"}</pre></dd>
            ${p.known_hosts_file && html`<dt>To the file</dt><dd><code>${p.known_hosts_file}</code></dd>`}
          </dl>
          <p class="hint">Compare the fingerprint with one you got from the server's administrator before accepting.</p>
          <div class="buttons">
            <button type="submit" name="answer" value="yes" disabled=${busy}>Accept</button>
            <button type="submit" name="answer" value="no" class="secondary" disabled=${busy}>Reject</button>
          </div>
          ${err}
        </form>
      <//>`}
    </div>`;
  }

  const submit = (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    send(form.elements.answer.value, form);
  };
  return html`<div class="card prompt" data-prompt-kind=${p.kind}>
    ${head}
    <form data-prompt-id=${p.id} onSubmit=${submit} autocomplete="off">
      <label for=${inputId}>${p.message || kindLabel(p.kind)}</label>
      <div class="inline">
        <input id=${inputId} name="answer" type=${p.echo ? "text" : "password"} autocomplete="off"
          spellcheck="false" required disabled=${busy} />
        <button type="submit" disabled=${busy}>Send</button>
      </div>
      ${err}
    </form>
  </div>`;
}

function kindLabel(k) {
  switch (k) {
    case "password": return "Password";
    case "passphrase": return "Key passphrase";
    case "keyboard-interactive": return "Login question";
    case "host-key": return "Unknown host key";
    default: return k;
  }
}

export function PromptsPage({ store, st, now }) {
  return html`<section id="prompts" aria-labelledby="prompts-h">
    <h2 id="prompts-h" tabindex="-1">Prompts</h2>
    <p class="muted">Connections wait on these answers. What you type goes to shunt once and is not shown again.</p>
    <${PromptList} store=${store} prompts=${st.prompts} now=${now} />
  </section>`;
}
