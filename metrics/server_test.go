package metrics_test

import (
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/broker/brokertest"
	"github.com/shunt-dev/shunt/metrics"
	"github.com/shunt-dev/shunt/state"
)

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// The server answers GET /metrics with the collector's metrics and the Go
// runtime's and the process's, nothing else; after Close it is gone.
func TestServer(t *testing.T) {
	f := &fakes{
		flows:   []metrics.FlowTotals{{Rule: `#1 "web"`, Action: "tunnel", Profile: "gw", Opened: 2}},
		conns:   []metrics.Connection{{Profile: "gw", State: state.Connected}},
		dropped: 1,
	}
	log, hook := test.NewNullLogger()
	s, err := metrics.Listen("127.0.0.1:0", metrics.NewCollector(f.sources()), log)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.Addr().String() + "/metrics"
	code, body := get(t, "GET", url)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`shunt_flows_opened_total{action="tunnel",profile="gw",rule="#1 \"web\""} 2`,
		`shunt_ssh_connections{profile="gw",state="connected"} 1`,
		`shunt_events_dropped_total 1`,
		`go_goroutines `,
		`go_info{version=`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape lacks %q:\n%s", want, body)
		}
	}
	if err := testutil.ScrapeAndCompare(url, strings.NewReader(`
# HELP shunt_events_dropped_total Events lost by listeners that did not keep up (flows --follow, ...).
# TYPE shunt_events_dropped_total counter
shunt_events_dropped_total 1
`), "shunt_events_dropped_total"); err != nil {
		t.Error(err)
	}
	if code, _ := get(t, "POST", url); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", code)
	}
	if code, _ := get(t, "GET", "http://"+s.Addr().String()+"/"); code != http.StatusNotFound {
		t.Errorf("GET /: %d, want 404", code)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.InfoLevel || e.Data["metrics"] != s.Addr().String() {
		t.Errorf("log %v, want the address served at info level", hook.AllEntries())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the server still answers after Close")
	}
}

// An address that does not listen is an error; two servers, each with
// its own registry, serve the same collector (no global registry).
func TestListenErrors(t *testing.T) {
	log, _ := test.NewNullLogger()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := metrics.NewCollector(metrics.Sources{Events: &fakes{}})
	if _, err := metrics.Listen(ln.Addr().String(), c, log); err == nil || !strings.Contains(err.Error(), "metrics: listen tcp") {
		t.Errorf("listening on a port in use: %v", err)
	}
	for range 2 {
		s, err := metrics.Listen("127.0.0.1:0", c, log)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
}

// Through the broker's Timings hook, a real SSH handshake and a real
// channel open (to brokertest's server) land in the histograms.
func TestTimingsFromBroker(t *testing.T) {
	priv := brokertest.NewPrivateKey(t)
	key, _ := ssh.NewSignerFromKey(priv)
	srv := brokertest.New(t, key.PublicKey())
	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	id, kh := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	os.WriteFile(id, pem.EncodeToMemory(block), 0o600)
	os.WriteFile(kh, []byte(srv.KnownHostsLine()), 0o600)

	tm := metrics.NewTimings("gw")
	log, _ := test.NewNullLogger()
	b, err := broker.New([]broker.Profile{{
		Name: "gw", Hosts: []string{"127.0.0.1"}, Port: srv.Port(), User: "alice",
		IdentityFiles: []string{id}, KnownHosts: []string{kh},
	}}, broker.Options{Timings: tm, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	echo := brokertest.Echo(t)
	for range 3 {
		c, err := b.Dial(context.Background(), "gw", echo)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	c := metrics.NewCollector(metrics.Sources{Timings: tm})
	out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "shunt_ssh_handshake_duration_seconds", "shunt_ssh_channel_open_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`shunt_ssh_handshake_duration_seconds_count{profile="gw"} 1`,
		`shunt_ssh_channel_open_duration_seconds_count{profile="gw"} 3`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the histograms lack %q:\n%s", want, out)
		}
	}
}
