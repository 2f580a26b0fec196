package platform

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	shunterrs "github.com/shunt-dev/shunt/internal/errs"
)

// macOS split DNS (dns_darwin.go wires it at /etc/resolver): one file per
// routing domain, named after it, in the resolver directory (resolver(5)):
//
//	# written by shunt; removed when shunt stops
//	nameserver 169.254.83.53
//	nameserver fd53:6875:6e74::53
//
// configd reads the directory and gives each file a supplemental
// resolver: names equal to or under the file's name go to its
// nameservers, every other name to the primary resolver as before. A file
// routes one domain; there is no file for "every name" (the primary
// resolver is the network service's, set through configd's dynamic store,
// scutil's State:/Network/Service/.../DNS), so a DNSConfig without
// domains is refused for now.
//
// Every file shunt writes starts with resolverMarker, and says the pid of
// the shunt that wrote it on the next line. shunt removes only files that
// start so: those it wrote, at Close or, after a crash, in CleanUpDNS,
// which leaves the files of a shunt still running (the device name cannot
// tell it there: the kernel numbers the utuns); a file of the same name
// without the marker (a VPN's, the user's) is never overwritten nor
// removed.

// DefaultResolverDir is macOS's directory of per-domain resolver files.
const DefaultResolverDir = "/etc/resolver"

// resolverMarker is the first line of every resolver file shunt writes.
const resolverMarker = "# written by shunt; removed when shunt stops"

// isShuntResolverFile reports whether data is a resolver file shunt wrote.
func isShuntResolverFile(data []byte) bool {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	return string(bytes.TrimRight(first, "\r")) == resolverMarker
}

// writerPID is the pid a resolver file of shunt's names on its second line
// ("# pid N"), 0 if none.
func writerPID(data []byte) int {
	_, rest, _ := bytes.Cut(data, []byte("\n"))
	second, _, _ := bytes.Cut(rest, []byte("\n"))
	n, ok := strings.CutPrefix(string(bytes.TrimRight(second, "\r")), "# pid ")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(n)
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// resolverFile is the text of a resolver file, written by the shunt of
// pid, sending names to nameservers.
func resolverFile(pid int, nameservers []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString(resolverMarker + "\n")
	fmt.Fprintf(&b, "# pid %d\n", pid)
	for _, a := range sortedNameservers(nameservers) {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.Bytes()
}

// resolverDirDNS routes domains to shunt through a resolver directory.
type resolverDirDNS struct {
	dir string
	pid int // this shunt's, written in its files
	up  []netip.AddrPort
	log logrus.FieldLogger

	mu sync.Mutex
	// files are the domains whose files shunt wrote.
	files map[string]bool
	// madeDir: shunt created dir, and removes it at Close if it is empty.
	madeDir bool
}

// newResolverDirDNS manages the files of dir for the shunt of pid; up are
// the system's resolvers (Upstreams). It changes nothing until Set.
func newResolverDirDNS(dir string, pid int, up []netip.AddrPort, log logrus.FieldLogger) *resolverDirDNS {
	return &resolverDirDNS{dir: dir, pid: pid, up: up, log: log, files: map[string]bool{}}
}

// Set writes a file for each of cfg.Domains and removes the files of the
// domains an earlier Set wrote and cfg no longer has.
func (r *resolverDirDNS) Set(cfg DNSConfig) error {
	if err := checkDNSConfig(cfg); err != nil {
		return err
	}
	if len(cfg.Domains) == 0 {
		return fmt.Errorf("sending every name to shunt's DNS server is not supported on macOS yet: %s routes names by domain only; name the domains (tunnel rules with domains: or hosts:), or set dns.mode: off and point the resolver at %s yourself", r.dir, cfg.Nameservers[0])
	}
	want := map[string]bool{}
	for _, d := range cfg.Domains {
		c, _ := canonicalDomain(d) // checked above
		want[c] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.makeDir(); err != nil {
		return err
	}
	text := resolverFile(r.pid, cfg.Nameservers)
	for _, d := range slices.Sorted(maps.Keys(want)) {
		if err := r.write(d, text); err != nil {
			return err
		}
	}
	var errs []error
	for _, d := range slices.Sorted(maps.Keys(r.files)) {
		if !want[d] {
			if err := r.remove(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return shunterrs.Join(errs...)
}

// makeDir creates the directory where it is missing (macOS has none until
// something writes a resolver file).
func (r *resolverDirDNS) makeDir() error {
	if _, err := os.Stat(r.dir); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("resolver directory: %w", err)
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("create the resolver directory: %w", err)
	}
	r.madeDir = true
	return nil
}

// write replaces domain's file with text, by a rename so that no reader
// sees half a file, unless the file there is not shunt's.
func (r *resolverDirDNS) write(domain string, text []byte) error {
	path := filepath.Join(r.dir, domain)
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, text):
		r.files[domain] = true
		return nil
	case err == nil && !isShuntResolverFile(old):
		return fmt.Errorf("%s exists and is not shunt's (its first line is not %q): another VPN or a person routes %s there; shunt leaves it alone, so remove it or drop the rules that name %s", path, resolverMarker, domain, domain)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read %s: %w", path, err)
	}
	// Beside the directory, not in it: configd reads every file there.
	tmp, err := os.CreateTemp(filepath.Dir(r.dir), ".shunt-resolver-*")
	if err != nil {
		return fmt.Errorf("write the resolver file for %s: %w", domain, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(text)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	r.files[domain] = true
	return nil
}

// remove removes domain's file if it is still shunt's.
func (r *resolverDirDNS) remove(domain string) error {
	delete(r.files, domain)
	path := filepath.Join(r.dir, domain)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	case !isShuntResolverFile(data):
		r.log.WithField("file", path).Warn("DNS: the resolver file shunt wrote was replaced by someone else's; leaving it")
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

func (r *resolverDirDNS) Upstreams() []netip.AddrPort { return slices.Clone(r.up) }

func (*resolverDirDNS) Mode() string { return DNSModeResolverDir }

// Close removes the files shunt wrote, and the directory if shunt made it
// and it is empty.
func (r *resolverDirDNS) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, d := range slices.Sorted(maps.Keys(r.files)) {
		if err := r.remove(d); err != nil {
			errs = append(errs, err)
		}
	}
	if r.madeDir {
		if err := os.Remove(r.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			r.madeDir = false
		}
	}
	return shunterrs.Join(errs...)
}

// cleanUpResolverDir removes the resolver files shunt wrote and a run that
// did not stop cleanly left in dir, and says which. Files without
// shunt's marker stay, and so do those whose writer is running still
// (running(pid)). A missing dir has nothing to clean.
func cleanUpResolverDir(dir string, running func(pid int) bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolver directory: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", path, err))
			continue
		}
		if !isShuntResolverFile(data) {
			continue
		}
		if pid := writerPID(data); pid != 0 && running(pid) {
			continue // another shunt's, on another utun
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s, left by a run of shunt: %w", path, err))
			continue
		}
		removed = append(removed, path)
	}
	return removed, shunterrs.Join(errs...)
}

// scutilResolver is one resolver of `scutil --dns`.
type scutilResolver struct {
	// Scoped: listed under "DNS configuration (for scoped queries)",
	// used only by queries bound to an interface.
	Scoped bool
	// Domain is the resolver's domain; empty for a default resolver.
	Domain      string
	Nameservers []netip.Addr
	// Port is the nameservers' port; 0 is 53.
	Port uint16
}

// parseScutilDNS reads the output of `scutil --dns`: sections that start
// with a "DNS configuration" line, each a list of "resolver #N" blocks of
// "key : value" lines (domain, nameserver[i], port, and others this
// ignores). What it does not know it skips.
func parseScutilDNS(data []byte) []scutilResolver {
	var out []scutilResolver
	scoped := false
	cur := -1
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimRight(line, "\r"))
		switch {
		case strings.HasPrefix(line, "DNS configuration"):
			scoped = strings.Contains(line, "scoped")
			cur = -1
			continue
		case strings.HasPrefix(line, "resolver #"):
			out = append(out, scutilResolver{Scoped: scoped})
			cur = len(out) - 1
			continue
		case cur < 0:
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		r := &out[cur]
		switch {
		case key == "domain":
			r.Domain = strings.ToLower(strings.TrimSuffix(val, "."))
		case strings.HasPrefix(key, "nameserver["):
			if a, err := netip.ParseAddr(val); err == nil {
				r.Nameservers = append(r.Nameservers, a)
			}
		case key == "port":
			if p, err := strconv.ParseUint(val, 10, 16); err == nil {
				r.Port = uint16(p)
			}
		}
	}
	return out
}

// scutilUpstreams are the nameservers of the default resolvers (no
// domain, not scoped), at their port, less shunt's own: those the system
// asks for a name no supplemental resolver claims.
func scutilUpstreams(rs []scutilResolver) []netip.AddrPort {
	var out []netip.AddrPort
	for _, r := range rs {
		if r.Scoped || r.Domain != "" {
			continue
		}
		port := r.Port
		if port == 0 {
			port = 53
		}
		for _, a := range r.Nameservers {
			ap := netip.AddrPortFrom(a, port)
			if !isOwnAddr(a) && !slices.Contains(out, ap) {
				out = append(out, ap)
			}
		}
	}
	return out
}

// systemUpstreams are the default resolver's nameservers: from
// `scutil --dns`, and where it names none, from resolv.conf, which macOS
// writes as a mirror of the primary resolver.
func systemUpstreams(r runner, resolvConf string) []netip.AddrPort {
	if out, err := r.run("scutil", "--dns"); err == nil {
		if up := scutilUpstreams(parseScutilDNS(out)); len(up) > 0 {
			return up
		}
	}
	data, err := os.ReadFile(resolvConf)
	if err != nil {
		return nil
	}
	return parseResolvConf(data).upstreams()
}

var _ OSDNS = (*resolverDirDNS)(nil)
