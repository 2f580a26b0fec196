//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/miekg/dns"
)

// Capability bits (linux/capability.h).
const (
	capChown         = 1 << 0
	capDACOverride   = 1 << 1
	capDACReadSearch = 1 << 2
	capNetAdmin      = 1 << 12
	capSysPtrace     = 1 << 19
)

// procCaps are the capability sets of each thread of process pid, from
// /proc/PID/task/*/status: "CapEff" and so on to their masks.
func procCaps(t *testing.T, pid int) []map[string]uint64 {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var out []map[string]uint64
	for _, p := range tasks {
		f, err := os.Open(p)
		if err != nil {
			continue // the thread ended
		}
		m := map[string]uint64{}
		s := bufio.NewScanner(f)
		for s.Scan() {
			k, v, _ := strings.Cut(s.Text(), ":")
			if strings.HasPrefix(k, "Cap") {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil {
					t.Fatalf("%s: %s: %v", p, s.Text(), err)
				}
				m[k] = n
			}
		}
		f.Close()
		out = append(out, m)
	}
	return out
}

// checkCaps fails unless every thread of sh has exactly want effective,
// permitted and bounding, and nothing inheritable or ambient.
func checkCaps(t *testing.T, sh *shunt, want uint64) {
	t.Helper()
	threads := procCaps(t, sh.cmd.Process.Pid)
	for i, m := range threads {
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"} {
			w := want
			if k == "CapInh" || k == "CapAmb" {
				w = 0
			}
			if got, ok := m[k]; !ok || got != w {
				t.Errorf("thread %d of %d: %s %016x, want %016x", i+1, len(threads), k, got, w)
			}
		}
	}
	t.Logf("%d threads hold capabilities %016x", len(threads), want)
}

// checkFile fails unless path has mode perm and belongs to uid:gid.
func checkFile(t *testing.T, path string, perm os.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != perm || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %04o owner %d:%d, want %04o %d:%d", path, fi.Mode().Perm(), st.Uid, st.Gid, perm, uid, gid)
	}
}

// reloadWith writes config over sh's configuration file, sends SIGHUP and
// waits for the outcome: true if it was put in force.
func reloadWith(t *testing.T, sh *shunt, config string) bool {
	t.Helper()
	path := sh.cmd.Args[len(sh.cmd.Args)-1]
	before := sh.log.String()
	done, refused := strings.Count(before, "configuration reloaded"), strings.Count(before, "the configuration was refused")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	sh.cmd.Process.Signal(syscall.SIGHUP)
	var ok bool
	waitFor(t, "the reload's outcome", func() bool {
		l := sh.log.String()
		ok = strings.Count(l, "configuration reloaded") > done
		return ok || strings.Count(l, "the configuration was refused") > refused
	})
	return ok
}

// unitBoundingSet is dist/systemd/shunt.service's CapabilityBoundingSet as
// setpriv --bounding-set takes it.
func unitBoundingSet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../dist/systemd/shunt.service")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapabilityBoundingSet="); ok {
			set := "-all"
			for _, c := range strings.Fields(v) {
				set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
			}
			return set
		}
	}
	t.Fatal("shunt.service has no CapabilityBoundingSet=")
	return ""
}

// After set-up shunt keeps only the capabilities its configuration needs,
// in every thread (effective, permitted and bounding; none inheritable or
// ambient), and they suffice: a tunnelled flow, split DNS in resolv.conf
// mode, a reload that adds routes, a clean stop that removes the routes,
// the policy rules, the device and shunt's resolv.conf. A reload that
// would need a dropped capability is refused. Under sudo, accept-new
// records the host key in the user's ~/.ssh, made theirs with ssh's
// modes. Under the systemd unit's bounding set the refusal of another
// user's flow still names its application.
func TestCapabilitiesAfterSetUp(t *testing.T) {
	prerequisites(t, "socat", "setpriv")
	topo := newTopology(t)
	sd := startSSHD(t, topo.gateway)
	echo := net.JoinHostPort(internalAddr, fmt.Sprint(portEcho))
	echoOn(t, topo.internal, echo)
	payload := []byte(strings.Repeat("capabilities ", 10000))
	config := func(profile, rules string) string {
		return fmt.Sprintf(`profiles:
  - name: gw
    host: %s
    user: root
    identity_files: [%s]
%srules:
  - destinations: [%s/32]
    action: tunnel
    profile: gw
%stun:
  name: %s
log:
  level: debug
`, gatewayAddr, sd.clientKey, profile, internalAddr, rules, topo.tunName())
	}

	t.Run("root, every user's flows", func(t *testing.T) {
		profile := fmt.Sprintf("    known_hosts: %s\n    allowed_users: any\n", sd.knownHosts)
		byName := "  - destinations: [files.corp.example]\n    action: tunnel\n    profile: gw\n"
		base := config(profile, byName) + "dns:\n  mode: resolv.conf\n"
		sh := startShunt(t, topo, base)
		checkCaps(t, sh, capNetAdmin)
		if !strings.Contains(sh.log.String(), "kept=CAP_NET_ADMIN") {
			t.Error("the log does not say which capabilities were kept")
		}
		echoCheck(t, topo.client, echo, payload)

		// The files: the socket 0660, resolv.conf's backup 0600 while
		// shunt owns the file, the fake-IP table 0600, root's.
		state := filepath.Join(filepath.Dir(sh.socket), "state")
		checkFile(t, sh.socket, 0o660, 0, 0)
		checkFile(t, filepath.Join(state, "resolv.conf.shunt-backup"), 0o600, 0, 0)
		rc := filepath.Join("/etc/netns", topo.client.name, "resolv.conf")
		if b, _ := os.ReadFile(rc); strings.Contains(string(b), "192.0.2.53\noptions") {
			t.Errorf("resolv.conf not shunt's:\n%s", b)
		}
		if r := query(t, topo.client, "udp", "files.corp.example", dns.TypeA); len(answerAddrs(r)) == 0 {
			t.Errorf("no fake address for files.corp.example: %v", r)
		}

		// A reload that routes more (CAP_NET_ADMIN after the drop).
		more := config(profile, byName+"  - destinations: [10.99.0.0/24]\n    action: tunnel\n    profile: gw\n") + "dns:\n  mode: resolv.conf\n"
		if !reloadWith(t, sh, more) {
			t.Fatalf("reload refused:\n%s", sh.log)
		}
		if out := topo.client.exec(t, "ip", "route", "show", "table", "21352"); !strings.Contains(out, "10.99.0.0/24") {
			t.Errorf("the reload's route is missing:\n%s", out)
		}
		// A reload that needs CAP_SYS_PTRACE, dropped: refused, saying so.
		if reloadWith(t, sh, more+"always_direct_applications: [firefox]\n") {
			t.Error("a reload needing CAP_SYS_PTRACE was put in force")
		}
		if l := sh.log.String(); !strings.Contains(l, "CAP_SYS_PTRACE") || !strings.Contains(l, "restart shunt") {
			t.Error("the refusal does not name CAP_SYS_PTRACE")
		}
		echoCheck(t, topo.client, echo, payload)
		checkCaps(t, sh, capNetAdmin)

		sh.stop(t)
		assertClean(t, topo)
		if b, _ := os.ReadFile(rc); string(b) != nsResolvConf {
			t.Errorf("resolv.conf not restored:\n%s", b)
		}
		checkFile(t, filepath.Join(state, "fake-ips.json"), 0o600, 0, 0)
		if _, err := os.Lstat(filepath.Join(state, "resolv.conf.shunt-backup")); err == nil {
			t.Error("the backup of resolv.conf is still there")
		}
	})

	t.Run("under sudo, accept-new", func(t *testing.T) {
		// nobody's home, where ssh would make ~/.ssh.
		home := filepath.Join(t.TempDir(), "home")
		if err := os.Mkdir(home, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(home, 65534, 65534)
		kh := filepath.Join(home, ".ssh", "known_hosts")
		profile := fmt.Sprintf("    known_hosts: %s\n    host_key_policy: accept-new\n    allowed_users: any\n", kh)
		sh := startShuntEnv(t, topo, config(profile, ""), "SUDO_USER=nobody", "SUDO_UID=65534", "SUDO_GID=65534")
		checkCaps(t, sh, capNetAdmin|capDACReadSearch|capDACOverride|capChown)
		echoCheck(t, topo.client, echo, payload)
		checkFile(t, filepath.Dir(kh), 0o700, 65534, 65534)
		checkFile(t, kh, 0o600, 65534, 65534)
		if b, _ := os.ReadFile(kh); !strings.Contains(string(b), gatewayAddr) {
			t.Errorf("known_hosts holds no key for %s:\n%s", gatewayAddr, b)
		}
		sh.stop(t)
		assertClean(t, topo)
	})

	t.Run("the systemd unit's bounding set", func(t *testing.T) {
		// The default allowed_users (root's flows only): a refused flow of
		// another user is logged with its application, which needs
		// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
		bset := unitBoundingSet(t)
		t.Logf("setpriv --bounding-set=%s", bset)
		profile := fmt.Sprintf("    known_hosts: %s\n", sd.knownHosts)
		sh := startShuntVia(t, topo, config(profile, ""), []string{"setpriv", "--bounding-set=" + bset})
		checkCaps(t, sh, capNetAdmin|capDACReadSearch|capSysPtrace)
		echoCheck(t, topo.client, echo, payload)
		refusedFor(t, topo.client, 65534, echo)
		if l := sh.log.String(); !strings.Contains(l, "this flow is uid 65534's") || !strings.Contains(l, "app=/usr/bin/socat") {
			t.Error("the refusal of nobody's flow does not name its uid and application")
		}
		sh.stop(t)
		assertClean(t, topo)
	})
}
