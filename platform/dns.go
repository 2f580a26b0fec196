package platform

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// OS DNS configuration: shunt's DNS server answers on the TUN side
// (netlayout.DNS4, DNS6), and one manager per way of configuring the
// system's resolver points the system at it. The shape follows Tailscale's
// net/dns OSConfigurator: Set says what is wanted, as often as it changes,
// and Close puts back what was there. Linux has systemd-resolved (per-link
// DNS and routing domains over D-Bus) and resolv.conf (the file rewritten,
// restored byte for byte); macOS (/etc/resolver/DOMAIN files) and Windows
// (NRPT rules) fit the same interface: both route by domain and by device.

// DNS modes, the values of the dns.mode setting.
const (
	DNSModeAuto     = "auto"
	DNSModeResolved = "systemd-resolved"
	DNSModeFile     = "resolv.conf"
	DNSModeOff      = "off"
	// DNSModeResolverDir is macOS's: a file per routing domain in
	// /etc/resolver (dns_resolverdir.go).
	DNSModeResolverDir = "resolver-dir"
)

// DNSConfig is what shunt asks of the OS resolver.
type DNSConfig struct {
	// Nameservers are shunt's own DNS server addresses
	// (netlayout.DNSAddrs), at port 53.
	Nameservers []netip.Addr
	// Domains are the routing domains: only names equal to or under one
	// of them go to Nameservers. Empty means every name. A manager that
	// cannot route by domain (resolv.conf) sends every name to
	// Nameservers, and shunt's server forwards the others to Upstreams.
	Domains []string
	// Device is the name of the TUN device; managers that configure by
	// link look its index up themselves.
	Device string
}

// OSDNS points the system's resolver at shunt's DNS server and back.
// Its methods may be called from several goroutines.
type OSDNS interface {
	// Set applies cfg, replacing what an earlier Set applied; a reload
	// calls it again with new domains. The first Set saves what it
	// changes, so that Close can restore it.
	Set(DNSConfig) error
	// Upstreams are the resolvers the system used before shunt changed
	// anything: where shunt's server forwards the names it does not
	// answer itself, and where host-name rules look names up. Never
	// shunt's own addresses. The slice is the caller's.
	Upstreams() []netip.AddrPort
	// Mode is the manager in use: DNSModeResolved, DNSModeFile,
	// DNSModeResolverDir, DNSModeNRPT or DNSModeOff (never DNSModeAuto).
	Mode() string
	// Close restores exactly what the system had before the first Set.
	// It may be called more than once, and without a Set.
	Close() error
}

// DNSOptions choose and set up the manager.
type DNSOptions struct {
	// Mode is one of the DNSMode constants; "" is DNSModeAuto.
	Mode string
	// StateDir holds the backup of resolv.conf
	// (StateDir/resolv.conf.shunt-backup) while shunt owns the file.
	StateDir string
	// ResolvConf is the resolver configuration file; "" is
	// /etc/resolv.conf. Tests pass their own.
	ResolvConf string
	// Bus connects to the system bus, where systemd-resolved answers;
	// nil is dbus.ConnectSystemBus. The OSDNS owns (and closes) the
	// connection it returns.
	Bus func() (*dbus.Conn, error)
	// Log receives what the user should know (a leftover restored, a
	// file someone else rewrote); nil is logrus's standard logger.
	Log logrus.FieldLogger
}

// DefaultResolvConf is the resolver configuration file of Unix systems.
const DefaultResolvConf = "/etc/resolv.conf"

// backupName is the file in StateDir that holds resolv.conf's original.
const backupName = "resolv.conf.shunt-backup"

func (o DNSOptions) withDefaults() (DNSOptions, error) {
	if o.Mode == "" {
		o.Mode = DNSModeAuto
	}
	switch o.Mode {
	case DNSModeAuto, DNSModeResolved, DNSModeFile, DNSModeOff:
	case DNSModeResolverDir:
		if runtime.GOOS != "darwin" {
			return o, fmt.Errorf("dns.mode %s is macOS's (files in %s): on %s use %s, %s, %s or %s", o.Mode, DefaultResolverDir, runtime.GOOS, DNSModeAuto, DNSModeResolved, DNSModeFile, DNSModeOff)
		}
	case DNSModeNRPT:
		if runtime.GOOS != "windows" {
			return o, fmt.Errorf("dns.mode %s is Windows' (NRPT rules): on %s use %s or another of this system's modes", o.Mode, runtime.GOOS, DNSModeAuto)
		}
	default:
		return o, fmt.Errorf("dns.mode %q: want one of %s, %s, %s, %s, %s, %s", o.Mode, DNSModeAuto, DNSModeResolved, DNSModeFile, DNSModeResolverDir, DNSModeNRPT, DNSModeOff)
	}
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	abs, err := filepath.Abs(o.ResolvConf)
	if err != nil {
		return o, fmt.Errorf("resolv.conf path %q: %w", o.ResolvConf, err)
	}
	o.ResolvConf = abs
	if o.Bus == nil {
		o.Bus = func() (*dbus.Conn, error) { return dbus.ConnectSystemBus() }
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	return o, nil
}

func (o DNSOptions) backupPath() (string, error) {
	if o.StateDir == "" {
		return "", errors.New("no state directory (state_dir) for the backup of resolv.conf")
	}
	return filepath.Join(o.StateDir, backupName), nil
}

// checkDNSConfig rejects what no manager can apply.
func checkDNSConfig(cfg DNSConfig) error {
	if len(cfg.Nameservers) == 0 {
		return errors.New("DNS configuration without a nameserver")
	}
	for _, a := range cfg.Nameservers {
		if !a.IsValid() || a.IsUnspecified() {
			return fmt.Errorf("nameserver %v is not an address", a)
		}
	}
	for _, d := range cfg.Domains {
		if _, err := canonicalDomain(d); err != nil {
			return err
		}
	}
	return nil
}

// canonicalDomain returns d in lower case without the final dot, or an
// error when d is not a DNS name: labels of 1 to 63 letters, digits,
// hyphens or underscores, 253 characters in all.
func canonicalDomain(d string) (string, error) {
	c := strings.ToLower(strings.TrimSuffix(d, "."))
	if c == "" || len(c) > 253 {
		return "", fmt.Errorf("routing domain %q is not a DNS name", d)
	}
	for label := range strings.SplitSeq(c, ".") {
		if len(label) == 0 || len(label) > 63 {
			return "", fmt.Errorf("routing domain %q is not a DNS name (empty or long label)", d)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("routing domain %q is not a DNS name (character %q)", d, r)
			}
		}
	}
	return c, nil
}

// sortedNameservers returns the addresses IPv4 first, in their order
// otherwise, without duplicates.
func sortedNameservers(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, want4 := range []bool{true, false} {
		for _, a := range addrs {
			if a.Unmap().Is4() == want4 && !slices.Contains(out, a.Unmap()) {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// isOwnAddr reports whether a is one of shunt's own addresses: a resolver
// there is shunt itself, never an upstream.
func isOwnAddr(a netip.Addr) bool {
	for _, p := range netlayout.Own() {
		if p.Contains(a.WithZone("").Unmap()) {
			return true
		}
	}
	return false
}

// resolvConf is what shunt reads of a resolv.conf file.
type resolvConf struct {
	// Nameservers in the file's order, all of them (the resolver uses
	// the first maxNameservers).
	Nameservers []netip.Addr
	// Keep are the search, domain and options lines, verbatim: shunt's
	// own file keeps them.
	Keep []string
	// Header is the text of the leading comment lines, which say who
	// wrote the file.
	Header string
}

// maxNameservers is how many nameserver lines glibc's resolver (MAXNS)
// and Go's use; the others are ignored.
const maxNameservers = 3

// parseResolvConf reads resolv.conf as glibc and Go's resolver do:
// "nameserver ADDR" lines (an IPv6 address may carry %zone), comments
// from '#' or ';' at the start of a line. Lines it does not know are
// ignored, as the resolver ignores them; an address that does not parse
// is skipped (glibc skips it too).
func parseResolvConf(data []byte) resolvConf {
	var rc resolvConf
	inHeader := true
	var header strings.Builder
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		s := strings.TrimRight(string(line), "\r")
		trimmed := strings.TrimLeft(s, " \t")
		if trimmed == "" {
			continue
		}
		if trimmed[0] == '#' || trimmed[0] == ';' {
			if inHeader {
				header.WriteString(trimmed)
				header.WriteByte('\n')
			}
			continue
		}
		inHeader = false
		// The resolver separates words by spaces and tabs only.
		f := strings.FieldsFunc(trimmed, func(r rune) bool { return r == ' ' || r == '\t' })
		switch f[0] {
		case "nameserver":
			if len(f) < 2 {
				continue
			}
			if a, err := netip.ParseAddr(f[1]); err == nil {
				rc.Nameservers = append(rc.Nameservers, a)
			}
		case "search", "domain", "options":
			rc.Keep = append(rc.Keep, s)
		}
	}
	rc.Header = header.String()
	return rc
}

// upstreams are the servers the resolver uses of the file: the first
// maxNameservers, at port 53, less shunt's own; with none, the resolver's
// default, the local host.
func (rc resolvConf) upstreams() []netip.AddrPort {
	var out []netip.AddrPort
	ns := rc.Nameservers
	if len(ns) > maxNameservers {
		ns = ns[:maxNameservers]
	}
	for _, a := range ns {
		if !isOwnAddr(a) {
			out = append(out, netip.AddrPortFrom(a, 53))
		}
	}
	if len(rc.Nameservers) == 0 {
		out = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("[::1]:53")}
	}
	return out
}

// dnsMarker starts the first line of every resolv.conf shunt writes: it
// is how shunt (and a person) knows the file is shunt's.
const dnsMarker = "# Written by shunt"

// isShuntResolvConf reports whether data is a resolv.conf shunt wrote.
func isShuntResolvConf(data []byte) bool { return bytes.HasPrefix(data, []byte(dnsMarker)) }

// shuntResolvConf is the file shunt writes: its marker, how to restore the
// original, the nameservers (IPv4 first) and the original's search, domain
// and options lines.
func shuntResolvConf(orig resolvConf, nameservers []netip.Addr, backup string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s, which restores the original when it stops. After a crash, its next start\n", dnsMarker)
	fmt.Fprintf(&b, "# restores it; by hand: the bytes after the first empty line of %s.\n", backup)
	for _, a := range sortedNameservers(nameservers) {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	for _, l := range orig.Keep {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// fileBackup is the saved state of resolv.conf: the exact bytes of a
// regular file with its mode and owner, or a symbolic link's target, or
// that there was no file.
type fileBackup struct {
	Path     string
	Missing  bool
	Symlink  string // the link's target; empty for a regular file
	Mode     os.FileMode
	UID, GID int
	Data     []byte
}

// same reports whether b and o describe the same state of the file.
func (b fileBackup) same(o fileBackup) bool {
	return b.Path == o.Path && b.Missing == o.Missing && b.Symlink == o.Symlink && b.Mode == o.Mode &&
		b.UID == o.UID && b.GID == o.GID && bytes.Equal(b.Data, o.Data)
}

// backupMagic is the first line of a backup file.
const backupMagic = "shunt resolv.conf backup 1"

// marshal writes the backup as text a person can read: a header of
// "key value" lines, an empty line, then the file's exact bytes.
func (b fileBackup) marshal() []byte {
	var w bytes.Buffer
	w.WriteString(backupMagic + "\n")
	fmt.Fprintf(&w, "path %s\n", strconv.Quote(b.Path))
	switch {
	case b.Missing:
		w.WriteString("missing\n")
	case b.Symlink != "":
		fmt.Fprintf(&w, "symlink %s\n", strconv.Quote(b.Symlink))
	default:
		fmt.Fprintf(&w, "mode %#o\nowner %d %d\nlength %d\n", uint32(b.Mode.Perm()), b.UID, b.GID, len(b.Data))
	}
	w.WriteString("\n")
	w.Write(b.Data)
	return w.Bytes()
}

// parseBackup reads what marshal wrote, and rejects anything else: a
// backup is restored over the system's resolv.conf, so a damaged one is
// an error, never a guess.
func parseBackup(data []byte) (fileBackup, error) {
	var b fileBackup
	head, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return b, errors.New("backup has no end of header")
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != backupMagic {
		return b, errors.New("backup does not start with " + strconv.Quote(backupMagic))
	}
	length, kinds, regular := -1, 0, false
	for _, l := range lines[1:] {
		key, val, _ := strings.Cut(l, " ")
		var err error
		switch key {
		case "path":
			b.Path, err = strconv.Unquote(val)
			if err == nil && b.Path == "" {
				err = errors.New("empty")
			}
		case "missing":
			b.Missing = true
			kinds++
		case "symlink":
			b.Symlink, err = strconv.Unquote(val)
			if err == nil && b.Symlink == "" {
				err = errors.New("empty")
			}
			kinds++
		case "mode":
			var m uint64
			m, err = strconv.ParseUint(val, 0, 32)
			if err == nil && m&^0o777 != 0 {
				err = errors.New("not a permission")
			}
			b.Mode = os.FileMode(m)
			regular = true
			kinds++
		case "owner":
			_, err = fmt.Sscanf(val, "%d %d", &b.UID, &b.GID)
			if err == nil && (b.UID < 0 || b.GID < 0) {
				err = errors.New("negative")
			}
		case "length":
			length, err = strconv.Atoi(val)
			if err == nil && length < 0 {
				err = errors.New("negative")
			}
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return b, fmt.Errorf("backup header line %q: %v", l, err)
		}
	}
	switch {
	case b.Path == "":
		return b, errors.New("backup names no path")
	case kinds != 1:
		return b, errors.New("backup says not exactly one of missing, symlink, mode")
	case regular && length != len(body):
		return b, fmt.Errorf("backup holds %d bytes of the file, its header says %d: it is cut short", len(body), length)
	case !regular && len(body) != 0:
		return b, errors.New("backup of a link or of no file holds bytes")
	}
	b.Data = body
	return b, nil
}

// offDNS changes nothing: shunt's server still listens, for users who
// point their resolver at it themselves.
type offDNS struct{ up []netip.AddrPort }

func (*offDNS) Set(cfg DNSConfig) error       { return checkDNSConfig(cfg) }
func (o *offDNS) Upstreams() []netip.AddrPort { return append([]netip.AddrPort(nil), o.up...) }
func (*offDNS) Mode() string                  { return DNSModeOff }
func (*offDNS) Close() error                  { return nil }
