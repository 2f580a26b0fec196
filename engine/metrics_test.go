package engine_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/metrics"
)

// scrape fetches the metrics served at addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%s", resp.StatusCode, err, body)
	}
	return string(body)
}

// The engine's collector, served, counts a tunnelled flow (its rule,
// profile and bytes, the SSH connection that carries it, the handshake
// and the channel open) and a blocked one, and the events a listener
// that never reads lost.
func TestEngineMetrics(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules))
	log, _ := test.NewNullLogger()
	srv, err := metrics.Listen("127.0.0.1:0", e.Metrics(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr().String()

	before := scrape(t, addr)
	for _, want := range []string{
		`shunt_ssh_connections{profile="gw",state="idle"} 1`,
		`shunt_ssh_handshake_duration_seconds_count{profile="gw"} 0`,
		`shunt_events_dropped_total 0`,
	} {
		if !strings.Contains(before, want) {
			t.Errorf("before any flow, the scrape lacks %q:\n%s", want, before)
		}
	}

	sub := e.Events().Subscribe(1) // never read: all but the first event are lost
	defer sub.Close()
	c := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, c, 1<<20)
	refused(t, w, "10.1.0.7:23")

	want := []string{
		`shunt_flows_opened_total{action="tunnel",profile="gw",rule="#2 \"internal\""} 1`,
		`shunt_flows_active{action="tunnel",profile="gw",rule="#2 \"internal\""} 1`,
		`shunt_flow_bytes_total{action="tunnel",direction="sent",profile="gw",rule="#2 \"internal\""} 1.048576e+06`,
		`shunt_flow_bytes_total{action="tunnel",direction="received",profile="gw",rule="#2 \"internal\""} 1.048576e+06`,
		`shunt_flows_refused_total{action="block",profile="",rule="#1 \"no-telnet\""} 1`,
		`shunt_flows_opened_total{action="block",profile="",rule="#1 \"no-telnet\""} 0`,
		`shunt_ssh_connections{profile="gw",state="connected"} 1`,
		`shunt_ssh_connections{profile="gw",state="idle"} 0`,
		`shunt_ssh_channels{profile="gw"} 1`,
		`shunt_ssh_reconnects_total{profile="gw"} 0`,
		`shunt_ssh_handshake_duration_seconds_count{profile="gw"} 1`,
		`shunt_ssh_channel_open_duration_seconds_count{profile="gw"} 1`,
		`go_goroutines `,
	}
	var got string
	// The last bytes are counted just after the application has them.
	waitFor(t, "the scrape to count the flows", func() bool {
		got = scrape(t, addr)
		for _, s := range want {
			if !strings.Contains(got, s) {
				return false
			}
		}
		return true
	})
	if strings.Contains(got, "shunt_events_dropped_total 0") || !strings.Contains(got, "shunt_events_dropped_total ") {
		t.Errorf("no event counted as dropped, with a listener that never reads:\n%s", got)
	}
	for _, addrLike := range []string{"10.1.0.7", "127.0.0.1"} {
		for _, line := range strings.Split(got, "\n") {
			if strings.HasPrefix(line, "shunt_") && strings.Contains(line, addrLike) {
				t.Errorf("an address in a label: %s", line)
			}
		}
	}

	c.Close()
	waitFor(t, "the closed flow to be counted", func() bool {
		got = scrape(t, addr)
		return strings.Contains(got, `shunt_flows_closed_total{action="tunnel",profile="gw",rule="#2 \"internal\""} 1`) &&
			strings.Contains(got, `shunt_flows_active{action="tunnel",profile="gw",rule="#2 \"internal\""} 0`)
	})
}
