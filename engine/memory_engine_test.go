package engine_test

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/metrics"
)

// flow_memory reaches the router, the metrics show it, and a reload
// changes it while flows run.
func TestFlowMemoryReload(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules + "flow_memory: 64MiB\n"))
	log, _ := test.NewNullLogger()
	srv, err := metrics.Listen("127.0.0.1:0", e.Metrics(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, c, 1<<20)
	got := scrape(t, srv.Addr().String())
	for _, want := range []string{
		"shunt_flow_memory_budget_bytes 6.7108864e+07",
		"shunt_flows_memory_reset_total 0",
		"shunt_flow_memory_buffered_bytes ",
		"shunt_flows_stalled 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the scrape lacks %q:\n%s", want, got)
		}
	}
	if err := e.Reload(w.config(rules + "flow_memory: 1GiB\n")); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, srv.Addr().String()); !strings.Contains(got, "shunt_flow_memory_budget_bytes 1.073741824e+09") {
		t.Errorf("after a reload to 1GiB, the scrape says:\n%s", got)
	}
	// The flow that ran across the reload still works.
	roundTrip(t, c, 1<<20)
	c.Close()
}
