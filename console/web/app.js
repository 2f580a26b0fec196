// app.js: the console's frame: navigation by the URL's fragment (#rules),
// the live store, and one page at a time.
import { html, render, useState, useEffect, useRef } from "./lib.js";
import { createStore } from "./store.js";
import { OverviewPage } from "./overview.js";
import { RulesPage } from "./rules.js";
import { ProfilesPage } from "./profiles.js";
import { FlowsPage } from "./flows.js";
import { PromptsPage } from "./prompts.js";

const pages = [
  ["overview", "Overview", OverviewPage],
  ["rules", "Rules", RulesPage],
  ["profiles", "Profiles", ProfilesPage],
  ["flows", "Flows", FlowsPage],
  ["prompts", "Prompts", PromptsPage],
];

function route() {
  const h = location.hash.replace(/^#/, "");
  return pages.some((p) => p[0] === h) ? h : "overview";
}

function App({ store }) {
  const [st, setSt] = useState(store.get());
  const [page, setPage] = useState(route());
  const [now, setNow] = useState(Date.now());
  const first = useRef(true);

  useEffect(() => store.subscribe(setSt), []);
  useEffect(() => {
    const on = () => setPage(route());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  // Ages and "ago"s move on once a second; nothing is fetched for it.
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  // A new page takes focus at its heading, so that screen readers say
  // where the user is.
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const hd = document.getElementById(page + "-h");
    if (hd) hd.focus();
  }, [page]);

  const Page = pages.find((p) => p[0] === page)[2];
  const open = [...st.flows.values()].filter((f) => f.flow.state !== "closed").length;
  return html`
    <a class="skip" href=${"#" + page} onClick=${(e) => {
      e.preventDefault();
      const hd = document.getElementById(page + "-h");
      if (hd) hd.focus();
    }}>Skip to content</a>
    <header class="top">
      <h1>shunt</h1>
      <nav aria-label="Console pages">
        <ul>
          ${pages.map(([id, label]) => html`<li><a href=${"#" + id} aria-current=${page === id ? "page" : undefined}>${label}${
            id === "flows" ? html` <span class="count" aria-label=${open + " open flows"}>${open}</span>` : ""
          }${id === "prompts" && st.prompts.length ? html` <span class="count attention" aria-label=${st.prompts.length + " waiting"}>${st.prompts.length}</span>` : ""}</a></li>`)}
        </ul>
      </nav>
      <span class=${"live " + (st.live ? "on" : "off")} role="status">${st.live ? "live" : "connecting…"}</span>
    </header>
    <div id="errors" role="alert" aria-live="assertive">${st.error && html`<p class="error">${st.error}</p>`}</div>
    <main>
      <${Page} store=${store} st=${st} now=${now} />
    </main>`;
}

const store = createStore();
store.refresh();
store.connect();
render(html`<${App} store=${store} />`, document.getElementById("app"));
