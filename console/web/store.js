// store.js keeps the live state: a status snapshot taken once (and again
// after the event stream reconnects), then kept current from the event
// stream: flows open and close, their byte counts and rates change with
// "bytes" events, profiles change state, prompts arrive. The flow table is
// never fetched again while the stream is up.
import { api, seg } from "./api.js";

const closedLinger = 5000; // ms a closed flow stays visible, marked closed

export function createStore() {
  let state = {
    status: null, // state.Status without its flows and prompts
    flows: new Map(), // id -> {flow, rateSent, rateReceived, at}
    prompts: [],
    live: false,
    error: "",
  };
  const subs = new Set();
  const set = (patch) => {
    state = { ...state, ...patch };
    for (const f of subs) f(state);
  };

  async function refresh() {
    try {
      const st = await api("GET", "status");
      const flows = new Map();
      const now = Date.now();
      for (const f of st.flows || []) {
        const old = state.flows.get(f.id);
        flows.set(f.id, old ? { ...old, flow: f } : { flow: f, rateSent: 0, rateReceived: 0, at: now });
      }
      set({ status: st, flows, prompts: st.prompts || [], error: "" });
    } catch (e) {
      set({ error: e.message });
    }
  }

  async function refreshPrompts() {
    try {
      const r = await api("GET", "prompts");
      set({ prompts: r.prompts || [] });
    } catch (e) {
      set({ error: e.message });
    }
  }

  function onEvent(ev) {
    const t = Date.parse(ev.time) || Date.now();
    switch (ev.event) {
      case "open": {
        if (!ev.flow) return;
        const flows = new Map(state.flows);
        flows.set(ev.flow.id, { flow: ev.flow, rateSent: 0, rateReceived: 0, at: t });
        set({ flows });
        break;
      }
      case "close": {
        if (!ev.flow) return;
        const flows = new Map(state.flows);
        const old = flows.get(ev.flow.id);
        flows.set(ev.flow.id, {
          ...(old || {}),
          flow: { ...ev.flow, state: "closed" },
          rateSent: 0,
          rateReceived: 0,
          at: t,
          reason: ev.reason || "",
        });
        set({ flows });
        const id = ev.flow.id;
        setTimeout(() => {
          const cur = state.flows.get(id);
          if (cur && cur.flow.state === "closed") {
            const next = new Map(state.flows);
            next.delete(id);
            set({ flows: next });
          }
        }, closedLinger);
        break;
      }
      case "bytes": {
        if (ev.profiles && ev.profiles.length && state.status) {
          // Totals and channels of profiles whose state did not change.
          const profiles = [...(state.status.profiles || [])];
          for (const p of ev.profiles) {
            const i = profiles.findIndex((q) => q.name === p.name && (q.via || "") === (p.via || "") && !q.retired);
            if (i >= 0) profiles[i] = p;
          }
          set({ status: { ...state.status, profiles } });
        }
        const flows = new Map(state.flows);
        for (const b of ev.flows || []) {
          const old = flows.get(b.id);
          if (!old || old.flow.state === "closed") continue;
          const dt = (t - old.at) / 1000;
          const f = { ...old.flow, sent: b.sent, received: b.received };
          flows.set(b.id, {
            ...old,
            flow: f,
            rateSent: dt > 0 ? Math.max(0, b.sent - old.flow.sent) / dt : old.rateSent,
            rateReceived: dt > 0 ? Math.max(0, b.received - old.flow.received) / dt : old.rateReceived,
            at: t,
          });
        }
        set({ flows });
        break;
      }
      case "state": {
        const p = ev.profile;
        if (!p || !state.status) return;
        const profiles = [...(state.status.profiles || [])];
        const i = profiles.findIndex((q) => q.name === p.name && (q.via || "") === (p.via || "") && !q.retired);
        if (i >= 0) profiles[i] = p;
        else profiles.push(p);
        set({ status: { ...state.status, profiles } });
        // A prompt ends when its profile leaves waiting-for-auth.
        if (p.state !== "waiting-for-auth" && state.prompts.some((q) => q.profile === p.name)) refreshPrompts();
        break;
      }
      case "prompt": {
        if (!ev.prompt || state.prompts.some((q) => q.id === ev.prompt.id)) return;
        set({ prompts: [...state.prompts, ev.prompt] });
        break;
      }
    }
  }

  function connect() {
    const es = new EventSource("api/v1/events");
    es.onopen = () => {
      set({ live: true });
      refresh(); // what happened while not listening
    };
    es.onerror = () => set({ live: false });
    es.onmessage = (m) => {
      try {
        onEvent(JSON.parse(m.data));
      } catch {
        // one malformed event does not stop the others
      }
    };
    return es;
  }

  return {
    get: () => state,
    subscribe(f) {
      subs.add(f);
      return () => subs.delete(f);
    },
    refresh,
    refreshPrompts,
    connect,
    // answered drops a prompt from the page once shunt took its answer.
    answered(id) {
      set({ prompts: state.prompts.filter((p) => p.id !== id) });
    },
    closeFlow: (id) => api("POST", `flows/${seg(id)}/close`, {}),
    onEvent, // for tests and for reuse
  };
}
