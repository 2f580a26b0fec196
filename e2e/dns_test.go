//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// dnsmasqOn runs Debian's dnsmasq in a namespace, logging every query, and
// returns its log.
func dnsmasqOn(t *testing.T, host *ns, listen string, args ...string) *syncBuffer {
	t.Helper()
	dir := t.TempDir()
	cmd := host.command(append([]string{"dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--listen-address=" + listen, "--bind-interfaces", "--log-queries", "--log-facility=-",
		"--pid-file=" + filepath.Join(dir, "pid"), "--user=root"}, args...)...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "dnsmasq on "+listen, func() bool { return strings.Contains(log.String(), "started") })
	return log
}

// setResolvConf writes a namespace's resolv.conf in place (ip netns exec
// binds it over /etc/resolv.conf for the programs started there).
func setResolvConf(t *testing.T, n *ns, content string) string {
	t.Helper()
	path := filepath.Join("/etc/netns", n.name, "resolv.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// query asks shunt's DNS server from inside the client namespace.
func query(t *testing.T, client *ns, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	var r *dns.Msg
	err := client.do(func() error {
		var err error
		c := &dns.Client{Net: network, Timeout: 10 * time.Second}
		r, _, err = c.Exchange(m, net.JoinHostPort(netlayout.DNS4.String(), "53"))
		return err
	})
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, network, err)
	}
	return r
}

func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// Split DNS with real programs: names only the far network knows are
// tunnelled by name (fake IPs) or resolved through the tunnel; every other
// name still goes to the client's own resolver, which never hears of the
// far names; resolv.conf comes back byte for byte after SIGTERM and after
// SIGKILL followed by the next start.
func TestSplitDNSEndToEnd(t *testing.T) {
	prerequisites(t, "dnsmasq", "curl", "socat", "getent")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	// The far network's resolver, on the internal host; the gateway's
	// sshd resolves the tunnelled names with it.
	wikiAddr := "172.31.2.3"
	topo.internal.exec(t, "ip", "addr", "add", wikiAddr+"/24", "dev", "sh"+topo.id+"i")
	far := dnsmasqOn(t, topo.internal, internalAddr, "--local=/corp.example/",
		"--host-record=mail.corp.example,"+internalAddr,
		"--host-record=wiki.corp.example,"+wikiAddr,
		"--cname=intranet.corp.example,wiki.corp.example")
	setResolvConf(t, topo.gateway, "nameserver "+internalAddr+"\n")
	// The client's own resolver, on the gateway's outer address: it knows
	// public.shunt.test only.
	local := dnsmasqOn(t, topo.gateway, gatewayAddr, "--host-record=public.shunt.test,"+gatewayAddr)
	original := "# the client's own resolver\nnameserver " + gatewayAddr + "\noptions timeout:2 attempts:2\n"
	resolvConf := setResolvConf(t, topo.client, original)

	sd := startSSHD(t, topo.gateway)
	ln := topo.internal.listen(t, "[::]:8080")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "internal web page for %s\n", r.Host)
	}))
	peerEcho(t, topo.internal, "[::]:9005")

	cfg := strings.Replace(shuntConfig(topo, sd, sd.knownHosts, `  - name: mail
    destinations: [mail.corp.example]
    action: tunnel
    profile: gw
  - name: internal
    destinations: [172.31.2.0/24]
    action: tunnel
    profile: gw`), "rules:\n", fmt.Sprintf(`dns:
  mode: resolv.conf
  resolve_through:
    - domains: [corp.example]
      profile: gw
      server: %s:53
rules:
`, internalAddr), 1)
	// One state_dir for every start: the backup of resolv.conf and the
	// fake-IP table live there.
	stateDir := filepath.Join(t.TempDir(), "state")
	cfg += "state_dir: " + stateDir + "\n"
	cfgFile := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	sh := startShunt(t, topo, cfg)
	if b, _ := os.ReadFile(resolvConf); !bytes.Contains(b, []byte("nameserver "+netlayout.DNS4.String())) {
		t.Fatalf("resolv.conf while shunt runs:\n%s", b)
	}

	t.Run("a name only the far side knows is tunnelled by name", func(t *testing.T) {
		out := topo.client.exec(t, "curl", "-sS", "--max-time", "10", "http://mail.corp.example:8080/")
		if out != "internal web page for mail.corp.example:8080\n" {
			t.Errorf("curl: %q", out)
		}
		if !strings.Contains(sd.log.String(), "mail.corp.example port 8080") && !strings.Contains(sh.log.String(), "mail.corp.example") {
			t.Errorf("neither sshd nor shunt's log shows a channel to mail.corp.example:\n%s", sd.log)
		}
	})

	t.Run("resolve_through gives the real internal address", func(t *testing.T) {
		out := topo.client.exec(t, "getent", "ahostsv4", "wiki.corp.example")
		if !strings.HasPrefix(out, wikiAddr+" ") {
			t.Errorf("getent ahostsv4 wiki.corp.example: %q, want %s", out, wikiAddr)
		}
		if got := peerSeen(t, topo.client, "/usr/bin/socat", -1, "wiki.corp.example:9005"); got != gatewayInner {
			t.Errorf("wiki.corp.example seen from %s, want the gateway (%s): the rule by network tunnels it", got, gatewayInner)
		}
		if !strings.Contains(far.String(), "wiki.corp.example") {
			t.Errorf("the far resolver was not asked:\n%s", far)
		}
	})

	t.Run("an uncaptured name resolves through the client's resolver", func(t *testing.T) {
		out := topo.client.exec(t, "getent", "ahostsv4", "public.shunt.test")
		if !strings.HasPrefix(out, gatewayAddr+" ") {
			t.Errorf("getent ahostsv4 public.shunt.test: %q", out)
		}
		if !strings.Contains(local.String(), "public.shunt.test") {
			t.Errorf("the client's resolver was not asked:\n%s", local)
		}
	})

	var fake string
	t.Run("A, AAAA, CNAME, NXDOMAIN over UDP and TCP", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			r := query(t, topo.client, network, "mail.corp.example", dns.TypeA)
			addrs := answerAddrs(r)
			if len(addrs) != 1 || !netlayout.Fake4.Contains(netip.MustParseAddr(addrs[0])) {
				t.Errorf("%s A mail: %v", network, r)
			} else {
				fake = addrs[0]
			}
			r = query(t, topo.client, network, "MAIL.corp.example", dns.TypeAAAA)
			if a := answerAddrs(r); len(a) != 1 || !netlayout.Fake6.Contains(netip.MustParseAddr(a[0])) {
				t.Errorf("%s AAAA mail: %v", network, r)
			}
			r = query(t, topo.client, network, "intranet.corp.example", dns.TypeA)
			if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || answerAddrs(r)[0] != wikiAddr {
				t.Errorf("%s A intranet (a CNAME to wiki): %v", network, r)
			}
			r = query(t, topo.client, network, "nothing.corp.example", dns.TypeA)
			if r.Rcode != dns.RcodeNameError {
				t.Errorf("%s A nothing.corp.example: rcode %s, want NXDOMAIN", network, dns.RcodeToString[r.Rcode])
			}
			r = query(t, topo.client, network, "public.shunt.test", dns.TypeA)
			if a := answerAddrs(r); len(a) != 1 || a[0] != gatewayAddr {
				t.Errorf("%s A public.shunt.test: %v", network, r)
			}
		}
	})

	t.Run("shunt explain names the fake address and the rule", func(t *testing.T) {
		// The table reaches the disk a moment after a change.
		waitFor(t, "the fake-IP table on disk", func() bool {
			b, _ := os.ReadFile(filepath.Join(stateDir, "fake-ips.json"))
			return fake != "" && bytes.Contains(b, []byte(fake))
		})
		out, _ := topo.client.command(shuntBin, "explain", "--global", "", "--user-config", "", "--config", cfgFile, "mail.corp.example:8080").CombinedOutput()
		if fake != "" && !strings.Contains(string(out), fake) || !strings.Contains(string(out), `"mail"`) {
			t.Errorf("explain mail.corp.example:8080:\n%s", out)
		}
	})

	// No query for any name under corp.example ever reached the client's
	// own resolver, for any type, over UDP or TCP.
	if strings.Contains(local.String(), "corp.example") {
		t.Errorf("the client's resolver heard of corp.example:\n%s", local)
	}

	sh.stop(t)
	if b, _ := os.ReadFile(resolvConf); string(b) != original {
		t.Fatalf("resolv.conf after SIGTERM:\n%q\nwant\n%q", b, original)
	}

	// A crash leaves shunt's resolv.conf behind; the next start puts the
	// original back first, and the fake-IP table comes back from disk.
	sh = startShunt(t, topo, cfg)
	sh.kill()
	if b, _ := os.ReadFile(resolvConf); string(b) == original {
		t.Fatal("resolv.conf was restored by a SIGKILLed shunt?")
	}
	sh = startShunt(t, topo, cfg)
	if fake != "" {
		if a := answerAddrs(query(t, topo.client, "udp", "mail.corp.example", dns.TypeA)); len(a) != 1 || a[0] != fake {
			t.Errorf("after a restart mail.corp.example is %v, want %s as before", a, fake)
		}
	}
	sh.stop(t)
	if b, _ := os.ReadFile(resolvConf); string(b) != original {
		t.Fatalf("resolv.conf after SIGKILL and a new start:\n%q\nwant\n%q", b, original)
	}

	// The next start puts resolv.conf back even when its configuration
	// serves no DNS at all.
	sh = startShunt(t, topo, cfg)
	sh.kill()
	noDNS := shuntConfig(topo, sd, sd.knownHosts, "  - destinations: [172.31.2.0/24]\n    action: tunnel\n    profile: gw") + "state_dir: " + stateDir + "\n"
	sh = startShunt(t, topo, noDNS)
	if b, _ := os.ReadFile(resolvConf); string(b) != original {
		t.Errorf("resolv.conf after SIGKILL and a start without split DNS:\n%q\nwant\n%q", b, original)
	}
	sh.stop(t)
}
