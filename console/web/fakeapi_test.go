package web

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// fakeAPI is the console's API as CONSOLE-API.md describes it, with
// canned state: two profiles, two flows, two rules (the second shadowed),
// a password prompt and a host-key prompt. It records every
// state-changing request, and streams events: bytes for the open flows
// every 200ms, a close event when a flow is closed.
type fakeAPI struct {
	mu       sync.Mutex
	requests []fakeRequest
	flows    map[uint64]map[string]any
	prompts  []map[string]any
	events   chan string
	stop     chan struct{}
	// readOnly: the global file owns the rules.
	readOnly bool
}

type fakeRequest struct {
	Method, Path string
	Body         json.RawMessage
	Origin       string
}

func newFakeAPI() *fakeAPI {
	start := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC).Format(time.RFC3339)
	return &fakeAPI{
		flows: map[uint64]map[string]any{
			1: {"id": 1, "src": "10.0.0.2:40000", "dst": "198.18.0.5:443", "name": "git.example.com", "host": "git.example.com",
				"app": "/usr/bin/git", "uid": 1000, "rule": `#1 "work"`, "action": "tunnel", "profile": "work",
				"server": "bastion.example.com:22", "sent": 1000, "received": 50000, "started": start, "state": "open"},
			2: {"id": 2, "src": "10.0.0.2:40002", "dst": "93.184.216.34:80", "name": "example.org",
				"app": "/usr/bin/curl", "uid": 1000, "rule": `#2 "web"`, "action": "direct", "profile": "",
				"sent": 300, "received": 1200, "started": start, "state": "open"},
		},
		prompts: []map[string]any{
			{"id": "p1", "profile": "lab", "server": "lab.example.com:22", "kind": "password",
				"message": "Password for alice@lab.example.com:", "echo": false, "created": start},
			{"id": "p2", "profile": "lab", "server": "lab.example.com:22", "kind": "host-key",
				"message": "The host key of lab.example.com:22 is not known.", "echo": true, "created": start,
				"fingerprint":      "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
				"known_hosts_line": "lab.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
				"known_hosts_file": "/home/alice/.ssh/known_hosts"},
		},
		events: make(chan string, 16),
		stop:   make(chan struct{}),
	}
}

func (f *fakeAPI) close() { close(f.stop) }

// recorded returns the requests so far with method and path.
func (f *fakeAPI) recorded(method, path string) []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.requests {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

var fakeConfig = map[string]any{
	"layers": []any{map[string]any{"role": "user", "path": "/home/alice/.config/shunt/shunt.yaml", "found": true}},
	"rules": map[string]any{
		"file": "/home/alice/.config/shunt/shunt.yaml", "editable": true,
		"items": []any{
			map[string]any{"name": "work", "destinations": []any{"*.example.com", "10.0.0.0/8"}, "ports": []any{22, 443, "8000-8080"},
				"action": "tunnel", "profile": "work", "host_from_application": true},
			map[string]any{"name": "web", "destinations": []any{"git.example.com"}, "ports": []any{443},
				"applications": []any{"/usr/bin/curl"}, "users": []any{"alice"}, "action": "direct", "fallback_direct": false},
		},
	},
	"profiles": map[string]any{"items": []any{
		map[string]any{"file": "/home/alice/.config/shunt/shunt.yaml", "editable": true, "profile": map[string]any{
			"name": "work", "host": "bastion.example.com", "port": 22, "user": "alice",
			"identity_files": []any{"~/.ssh/id_ed25519"}, "host_key_policy": "strict", "connections": 2}},
		map[string]any{"file": "/home/alice/.config/shunt/shunt.yaml", "editable": true, "profile": map[string]any{
			"name": "lab", "host": []any{"lab.example.com", "lab2.example.com"}, "user": "alice", "jump": "work", "host_key_policy": "ask"}},
	}},
	"shadowed": []any{map[string]any{"index": 1, "by": 0, "message": `rule #1 "work" matches every flow rule #2 "web" would: move "web" above it`}},
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/api/v1/")
	if r.Method != http.MethodGet {
		body, _ := io.ReadAll(r.Body)
		if !json.Valid(body) || r.Header.Get("Content-Type") != "application/json" {
			writeJSON(w, 400, map[string]string{"error": "want a JSON body"})
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, fakeRequest{r.Method, p, body, r.Header.Get("Origin")})
		f.mu.Unlock()
	}
	ok := map[string]any{"ok": true, "errors": []any{}, "warnings": []any{}, "shadowed": []any{}, "yaml": "rules:\n  - name: web\n"}
	switch {
	case r.Method == "GET" && p == "status":
		f.mu.Lock()
		flows := make([]any, 0, len(f.flows))
		for id := uint64(1); id <= 10; id++ {
			if fl, ok := f.flows[id]; ok {
				flows = append(flows, fl)
			}
		}
		prompts := append([]map[string]any(nil), f.prompts...)
		// The flows' maps change with each bytes event: encode them
		// under the lock.
		defer f.mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"capture": true,
			"profiles": []any{
				map[string]any{"name": "work", "state": "connected", "server": "bastion.example.com:22", "route": "direct",
					"since": "2026-12-02T09:00:00Z", "connections": 2, "channels": 1, "sent": 123456, "received": 9876543, "error": ""},
				map[string]any{"name": "lab", "state": "waiting-for-auth", "server": "lab.example.com:22", "route": "jump work",
					"since": "2026-12-02T09:59:00Z", "connections": 0, "channels": 0, "error": "waiting for a password"},
			},
			"flows": flows, "prompts": prompts,
			"listeners": []any{map[string]any{"kind": "socks", "listen": "127.0.0.1:1080", "clients": 3, "denied": 0}},
		})
	case r.Method == "GET" && p == "prompts":
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"prompts": f.prompts})
	case r.Method == "GET" && p == "config":
		f.mu.Lock()
		ro := f.readOnly
		f.mu.Unlock()
		if ro {
			c := map[string]any{}
			for k, v := range fakeConfig {
				c[k] = v
			}
			c["rules"] = map[string]any{"file": "/etc/shunt/shunt.yaml", "editable": false,
				"why_not": "the global file /etc/shunt/shunt.yaml owns the rules",
				"items":   fakeConfig["rules"].(map[string]any)["items"]}
			writeJSON(w, 200, c)
			return
		}
		writeJSON(w, 200, fakeConfig)
	case r.Method == "GET" && p == "events":
		f.serveEvents(w, r)
	case r.Method == "POST" && p == "config/check", r.Method == "PUT" && p == "config/rules",
		r.Method == "PUT" && strings.HasPrefix(p, "config/profiles/"):
		// A rule named "bad" is an error, as shunt check would say it.
		f.mu.Lock()
		body := f.requests[len(f.requests)-1].Body
		f.mu.Unlock()
		if strings.Contains(string(body), `"name":"bad"`) {
			res := map[string]any{"ok": false, "warnings": []any{}, "shadowed": []any{},
				"errors": []any{map[string]any{"file": "/home/alice/.config/shunt/shunt.yaml", "line": 31,
					"message": `rules[2]: action "tunnel" needs a profile: add profile: work`}}}
			code := 200
			if r.Method == "PUT" {
				code = 422
			}
			writeJSON(w, code, res)
			return
		}
		writeJSON(w, 200, ok)
	case r.Method == "POST" && p == "explain":
		writeJSON(w, 200, map[string]any{
			"flow":     map[string]any{"destination": "git.example.com:443", "port": 443},
			"capture":  map[string]any{"captured": true, "device": "shunt0", "why": "git.example.com is in 198.18.0.0/15"},
			"steps":    []any{map[string]any{"index": 1, "rule": `#1 "work"`, "matched": true, "why": "destination *.example.com"}},
			"decision": map[string]any{"index": 1, "rule": `#1 "work"`, "action": "tunnel", "why": "destination *.example.com", "profile": "work", "server": "bastion.example.com:22"},
		})
	case r.Method == "POST" && strings.HasPrefix(p, "prompts/") && strings.HasSuffix(p, "/answer"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "prompts/"), "/answer")
		f.mu.Lock()
		for i, q := range f.prompts {
			if q["id"] == id {
				f.prompts = append(f.prompts[:i], f.prompts[i+1:]...)
				break
			}
		}
		f.mu.Unlock()
		writeJSON(w, 200, map[string]string{"answered": id})
	case r.Method == "POST" && strings.HasPrefix(p, "flows/") && strings.HasSuffix(p, "/close"):
		var id uint64
		fmt.Sscanf(strings.TrimPrefix(p, "flows/"), "%d", &id)
		f.mu.Lock()
		fl, found := f.flows[id]
		delete(f.flows, id)
		f.mu.Unlock()
		if !found {
			writeJSON(w, 404, map[string]string{"error": "no such flow"})
			return
		}
		ev, _ := json.Marshal(map[string]any{"event": "close", "time": time.Now().UTC(), "flow": fl, "reason": "closed by the console"})
		f.events <- string(ev)
		writeJSON(w, 200, map[string]any{"closed": id})
	case r.Method == "POST" && strings.HasPrefix(p, "profiles/"):
		writeJSON(w, 200, map[string]any{"connected": "work"})
	default:
		writeJSON(w, 404, map[string]string{"error": "no such endpoint: " + r.Method + " " + p})
	}
}

// serveEvents streams SSE: a bytes event for the open flows every 200ms
// (their counts grow), and whatever the handlers queue.
func (f *fakeAPI) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		writeJSON(w, 406, map[string]string{"error": "this fake serves only SSE"})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	fl.Flush()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var msg string
		select {
		case <-r.Context().Done():
			return
		case <-f.stop:
			return
		case msg = <-f.events:
		case now := <-tick.C:
			f.mu.Lock()
			var changed []any
			for id := uint64(1); id <= 10; id++ {
				if x, ok := f.flows[id]; ok {
					x["sent"] = x["sent"].(int) + 70000
					x["received"] = x["received"].(int) + 350000
					changed = append(changed, map[string]any{"id": id, "sent": x["sent"], "received": x["received"]})
				}
			}
			f.mu.Unlock()
			b, _ := json.Marshal(map[string]any{"event": "bytes", "time": now.UTC(), "flows": changed, "profile": nil})
			msg = string(b)
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", msg); err != nil {
			return
		}
		fl.Flush()
	}
}

// openFlow adds a flow and sends its open event.
func (f *fakeAPI) openFlow(id uint64) {
	fl := map[string]any{"id": id, "src": "10.0.0.2:40100", "dst": "198.18.0.9:22", "name": "build.example.com", "host": "build.example.com",
		"app": "/usr/bin/ssh", "uid": 1000, "rule": `#1 "work"`, "action": "tunnel", "profile": "work",
		"sent": 0, "received": 0, "started": time.Now().UTC().Format(time.RFC3339Nano), "state": "open"}
	f.mu.Lock()
	f.flows[id] = fl
	ev, _ := json.Marshal(map[string]any{"event": "open", "time": time.Now().UTC(), "flow": fl, "profile": nil})
	f.mu.Unlock()
	f.events <- string(ev)
}
