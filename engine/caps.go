package engine

// Capabilities after set-up. shunt runs as uid 0 (sudo or systemd), and
// once the device, its routes and policy rules, the DNS settings and the
// control socket exist, it keeps only the capabilities that what runs
// afterwards needs (capsNeeded), in every thread, and drops the rest from
// the bounding set too (platform.KeepCapabilities). What runs after
// set-up, and what it needs:
//
//   - Routes and policy rules that follow DNS answers and reloads, the
//     kill switch's blackhole and throw routes, SO_MARK on every bypass
//     socket (SSH servers, proxies, direct flows, DNS upstreams),
//     systemd-resolved's per-link DNS (resolved lets CAP_NET_ADMIN set
//     it), and at the stop the routes, rules and device removed:
//     CAP_NET_ADMIN, always.
//   - Identity files, certificates, known_hosts and ssh_config, read at
//     each connection, and the configuration read again at each reload:
//     under sudo they are the user's, in a home root may not search:
//     CAP_DAC_READ_SEARCH.
//   - Rules that name applications (and always_direct_applications): the
//     owner lookup reads other users' /proc/PID/fd (mode 0500, and each
//     link is a ptrace-mode check) and /proc/PID/exe: CAP_SYS_PTRACE and
//     CAP_DAC_READ_SEARCH. Flows checked by user only (allowed_users, the
//     default, and users:) get the user from sock_diag, which needs
//     neither, but the log line that refuses another user's flow names
//     its application too, which needs both: they are kept unless every
//     profile has allowed_users: any and no rule names users.
//   - accept-new and ask record new host keys in the user's known_hosts
//     (creating ~/.ssh), given to that user as ssh would own them:
//     CAP_DAC_OVERRIDE to write in the user's directory, CAP_CHOWN.
//   - An ssh-agent socket (SSH_AUTH_SOCK) of another user: connecting
//     needs write access to it: CAP_DAC_OVERRIDE.
//   - resolv.conf not root's (or in a directory not root's), rewritten
//     when DNS starts on a reload and restored at the stop with its owner:
//     CAP_DAC_OVERRIDE and CAP_CHOWN. No mount is made (a bind-mounted
//     file is rewritten in place), so never CAP_SYS_ADMIN.
//
// Nothing else after set-up needs one: the control socket and the metrics
// listener are open before, --pprof is served on the control socket, the
// state files are written in root's state directory, sd_notify and the
// netlink watch need none. A reload whose configuration would need a
// capability dropped at start is refused: restart shunt for it.

import (
	"cmp"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/router"
)

// capNeed is a capability kept after set-up and why.
type capNeed struct {
	cap platform.Capability
	why []string
}

// capFacts are what capsNeeded looks at on the machine.
type capFacts struct {
	// sudo is the user who ran sudo; nil: not under sudo.
	sudo *broker.FileOwner
	// agentSocket is SSH_AUTH_SOCK ("": none).
	agentSocket string
	// dnsMode is the resolver manager in use, or the configured mode
	// while none runs (a reload may start one).
	dnsMode string
	// resolvConf is the resolver's file.
	resolvConf string
	// owner is the uid owning path, without following a last symbolic
	// link; a missing path is judged by the nearest directory above it
	// that exists.
	owner func(path string) (uid uint32, ok bool)
}

// notRoot reports whether path (or the directory it would be made in)
// belongs to a user other than root.
func (f capFacts) notRoot(path string) bool {
	uid, ok := f.owner(path)
	return ok && uid != 0
}

// capsNeeded are the capabilities plan needs after set-up, each with its
// reasons, in the order of their numbers.
func capsNeeded(plan *Plan, f capFacts) []capNeed {
	need := map[platform.Capability][]string{}
	add := func(c platform.Capability, why string) {
		if !slices.Contains(need[c], why) {
			need[c] = append(need[c], why)
		}
	}
	add(platform.CapNetAdmin, "routes and policy rules follow DNS answers and reloads, the kill switch, SO_MARK on the bypass sockets, DNS on systemd-resolved, the routes, rules and device removed at the stop")
	if f.sudo != nil {
		add(platform.CapDACReadSearch, fmt.Sprintf("the keys, known_hosts and ssh_config of uid %d (sudo), read at each connection, and the configuration at each reload", f.sudo.UID))
	}
	switch {
	case needsProcesses(plan):
		add(platform.CapSysPtrace, "rules name applications: other users' /proc/PID/fd and exe")
		add(platform.CapDACReadSearch, "rules name applications: other users' /proc/PID/fd")
	case plan.Ruleset.NeedsOwner():
		const why = "flows are checked by user (allowed_users, users:): the application of another user's flow, named in the log line that refuses it, from /proc/PID/fd and exe"
		add(platform.CapSysPtrace, why)
		add(platform.CapDACReadSearch, why)
	}
	for _, p := range plan.Profiles {
		for _, file := range slices.Concat(p.IdentityFiles, p.CertificateFiles, p.KnownHosts) {
			if f.notRoot(file) {
				add(platform.CapDACReadSearch, fmt.Sprintf("profile %q reads files not root's", p.Name))
			}
		}
		if (p.HostKeyPolicy == broker.AcceptNew || p.HostKeyPolicy == broker.Ask) && len(p.KnownHosts) > 0 && f.notRoot(p.KnownHosts[0]) {
			why := fmt.Sprintf("profile %q records new host keys in %s, not root's", p.Name, p.KnownHosts[0])
			add(platform.CapDACOverride, why)
			add(platform.CapChown, why+", for its owner")
		}
	}
	if f.agentSocket != "" && f.notRoot(f.agentSocket) {
		add(platform.CapDACOverride, "the ssh-agent's socket (SSH_AUTH_SOCK) is another user's")
		add(platform.CapDACReadSearch, "the ssh-agent's socket (SSH_AUTH_SOCK) is another user's")
	}
	if cfg := plan.Config; cfg.DNS.Serve && (f.dnsMode == platform.DNSModeFile || f.dnsMode == platform.DNSModeAuto || f.dnsMode == "") && f.resolvConf != "" {
		if f.notRoot(f.resolvConf) || f.notRoot(filepath.Dir(f.resolvConf)) {
			add(platform.CapDACOverride, f.resolvConf+" is not root's: rewritten, and restored at the stop")
		}
		if f.notRoot(f.resolvConf) {
			add(platform.CapChown, f.resolvConf+" is not root's: restored with its owner")
		}
	}
	out := make([]capNeed, 0, len(need))
	for c, why := range need {
		out = append(out, capNeed{cap: c, why: why})
	}
	slices.SortFunc(out, func(a, b capNeed) int { return cmp.Compare(a.cap, b.cap) })
	return out
}

// needsProcesses reports whether plan's decisions look at the flows'
// applications, which only /proc of their processes tells.
func needsProcesses(plan *Plan) bool {
	if len(plan.Config.AlwaysDirectApplications) > 0 {
		return true
	}
	return slices.ContainsFunc(plan.Rules, func(r router.Rule) bool { return len(r.Applications) > 0 })
}

// machineFacts are the facts of this machine for plan (e.facts in a
// test).
func (e *Engine) machineFacts(plan *Plan) capFacts {
	if e.facts != nil {
		return e.facts(plan)
	}
	f := capFacts{
		sudo:        SudoOwner(e.deps.Getenv),
		agentSocket: e.deps.Getenv("SSH_AUTH_SOCK"),
		dnsMode:     plan.Config.DNS.Mode,
		resolvConf:  "/etc/resolv.conf",
		owner:       pathOwner,
	}
	if e.dns != nil {
		f.dnsMode = e.dns.os.Mode()
	}
	return f
}

// SudoOwner is the user who ran sudo, as ActingUser in config finds them:
// the user database's entry of SUDO_USER, else SUDO_UID and SUDO_GID. Nil
// when shunt does not run as root under sudo for another user.
func SudoOwner(getenv func(string) string) *broker.FileOwner {
	name := getenv("SUDO_USER")
	if os.Geteuid() != 0 || name == "" || name == "root" {
		return nil
	}
	if u, err := user.Lookup(name); err == nil {
		uid, uerr := strconv.Atoi(u.Uid)
		gid, gerr := strconv.Atoi(u.Gid)
		if uerr == nil && gerr == nil {
			return &broker.FileOwner{UID: uid, GID: gid}
		}
	}
	uid, uerr := strconv.Atoi(getenv("SUDO_UID"))
	gid, gerr := strconv.Atoi(getenv("SUDO_GID"))
	if uerr != nil || gerr != nil {
		return nil
	}
	return &broker.FileOwner{UID: uid, GID: gid}
}

// keepCaps drops, once set up, the capabilities plan does not need
// (Linux, on the OS's capture only: an engine on a test's capture runs
// inside a test, which must keep its own).
func (e *Engine) keepCaps(plan *Plan) error {
	if e.osCapture == nil || runtime.GOOS != "linux" {
		return nil
	}
	needs := capsNeeded(plan, e.machineFacts(plan))
	want := make([]platform.Capability, len(needs))
	for i, n := range needs {
		want[i] = n.cap
	}
	kept, err := platform.KeepCapabilities(want)
	if err != nil {
		return err
	}
	e.kept, e.capsDropped = kept.Kept, true
	names := make([]string, len(kept.Kept))
	for i, c := range kept.Kept {
		names[i] = c.String()
	}
	e.log.WithField("kept", strings.Join(names, " ")).Info("set up: dropped every capability but these")
	for _, n := range needs {
		l := e.log.WithFields(logrus.Fields{"capability": n.cap.String(), "why": strings.Join(n.why, "; ")})
		if slices.Contains(kept.Missing, n.cap) {
			l.Warn("capability needed but not given to shunt (a service manager's CapabilityBoundingSet?): what needs it will fail")
		} else {
			l.Info("capability kept")
		}
	}
	if kept.BoundKept {
		e.log.Warn("without CAP_SETPCAP the bounding set stays as given: programs shunt starts as root (SSH_ASKPASS) may regain capabilities shunt dropped")
	}
	return nil
}

// capsAllow refuses plan, for a reload, when it needs a capability that
// was dropped at start.
func (e *Engine) capsAllow(plan *Plan) error {
	if !e.capsDropped {
		return nil
	}
	var lack []string
	for _, n := range capsNeeded(plan, e.machineFacts(plan)) {
		if !slices.Contains(e.kept, n.cap) {
			lack = append(lack, fmt.Sprintf("%s (%s)", n.cap, strings.Join(n.why, "; ")))
		}
	}
	if len(lack) > 0 {
		return fmt.Errorf("the new configuration needs %s, which shunt dropped after set-up because the configuration it started with did not: restart shunt to use it", strings.Join(lack, ", "))
	}
	return nil
}
