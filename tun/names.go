package tun

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// This file holds each OS's rules for device names and Windows' GUIDs as
// plain functions of the OS's name (GOOS), so that the rules of all three
// are tested on any one of them. The OS's own files bind them to
// runtime.GOOS: CheckName and DefaultName.

// NameError says why an OS would not create a TUN device of that name.
type NameError struct {
	Name   string
	GOOS   string
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("%q is not a valid interface name on %s: %s", e.Name, e.GOOS, e.Reason)
}

// defaultName is the device name Open uses on goos when Options.Name is
// empty, config's default too (netlayout.DeviceName).
func defaultName(goos string) string { return netlayout.DeviceName(goos) }

// checkName returns a *NameError if goos would refuse to create a TUN
// device named name, or would give it another name than the one asked for
// (other than macOS's "utun", whose number the kernel picks; Open returns
// the name the device got).
func checkName(goos, name string) error {
	var why string
	switch goos {
	case "linux", "android":
		why = linuxNameProblem(name)
	case "darwin", "ios":
		why = darwinNameProblem(name)
	case "windows":
		why = windowsNameProblem(name)
	default:
		// The BSDs: IFNAMSIZ is 16 there too.
		why = linuxNameProblem(name)
	}
	if why != "" {
		return &NameError{Name: name, GOOS: goos, Reason: why}
	}
	return nil
}

// linuxIFNAMSIZ is the size of an interface name's buffer, with its
// terminating NUL (IFNAMSIZ in <linux/if.h>).
const linuxIFNAMSIZ = 16

// linuxNameProblem applies the kernel's dev_valid_name: 1 to 15 bytes, not
// "." or "..", none of '/', ':' or a byte its isspace() is true for (which
// includes 0xa0, a byte inside many UTF-8 letters such as "à"). A '%' would
// make the name a template (shunt%d) the kernel fills with a free number:
// shunt refuses it, so that the device's name is the configured one, which
// a crashed run's clean-up looks for.
func linuxNameProblem(name string) string {
	switch {
	case name == "":
		return "it is empty: name the device, e.g. shunt0"
	case len(name) >= linuxIFNAMSIZ:
		return fmt.Sprintf("it is %d bytes long: use at most %d", len(name), linuxIFNAMSIZ-1)
	case name == "." || name == "..":
		return "it is reserved: name the device, e.g. shunt0"
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case b == '/' || b == ':' || b == 0:
			return fmt.Sprintf("it holds %q: use letters, digits, '-', '_' or '.'", b)
		case b == '%':
			return "it holds '%': the kernel would choose the number itself; write the name in full, e.g. shunt0"
		case b == ' ' || (b >= '\t' && b <= '\r'):
			return "it holds white space: use letters, digits, '-', '_' or '.'"
		case b == 0xa0:
			return "it holds the byte 0xa0, which the kernel counts as a space (it is part of letters such as \"à\"): use ASCII letters, digits, '-', '_' or '.'"
		}
	}
	return ""
}

// darwinMaxUnit is the largest N in utunN: the kernel's control socket
// is connected to unit N+1, a uint32.
const darwinMaxUnit = 1<<32 - 2

// darwinNameProblem accepts what wireguard-go's darwin CreateTUN accepts
// ("utun" or "utun%d"), and only in its canonical form: no sign, no leading
// zero and nothing after the number, since the kernel would name the device
// utunN whatever was written around N.
func darwinNameProblem(name string) string {
	const help = "macOS names TUN devices utunN: write utun to let the kernel choose N (shunt reports the name it got), or utunN with a free N"
	if name == "utun" {
		return ""
	}
	digits, ok := strings.CutPrefix(name, "utun")
	if !ok || digits == "" {
		return help
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return help
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > darwinMaxUnit {
		return fmt.Sprintf("the number is larger than macOS's largest unit (%d): write utun to let the kernel choose", uint64(darwinMaxUnit))
	}
	if digits[0] == '0' && len(digits) > 1 {
		return fmt.Sprintf("the kernel would name it utun%d: write that", n)
	}
	return ""
}

// windowsMaxName is the longest adapter name wintun takes, in UTF-16 code
// units: MAX_ADAPTER_NAME in wintun.h is 128 with the terminating NUL
// (golang.zx2c4.com/wintun.AdapterNameMax).
const windowsMaxName = 127

// windowsNameProblem checks an adapter's (connection's) name: what wintun
// takes (at most 127 UTF-16 code units, no NUL), and what Windows' Network
// Connections folder refuses in a connection's name (\ / : * ? " < > | and
// control characters) or trims (space at either end).
func windowsNameProblem(name string) string {
	switch {
	case name == "":
		return "it is empty: name the adapter, e.g. shunt"
	case !utf8.ValidString(name):
		return "it is not valid UTF-8"
	}
	if n := len(utf16.Encode([]rune(name))); n > windowsMaxName {
		return fmt.Sprintf("it is %d UTF-16 code units long: use at most %d", n, windowsMaxName)
	}
	if i := strings.IndexAny(name, `\/:*?"<>|`); i >= 0 {
		return fmt.Sprintf("it holds %q, which Windows refuses in a connection's name: leave out \\ / : * ? \" < > |", name[i])
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Sprintf("it holds the control character %U: use printable characters", r)
		}
	}
	if strings.TrimSpace(name) != name {
		return "it begins or ends with white space, which Windows trims: remove it"
	}
	return ""
}

// guid is a Windows GUID (windows.GUID's layout): the fields are the
// big-endian groups of its text form.
type guid struct {
	Data1 uint32
	Data2 uint16
	Data3 uint16
	Data4 [8]byte
}

func (g guid) String() string {
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:], g.Data1)
	binary.BigEndian.PutUint16(b[4:], g.Data2)
	binary.BigEndian.PutUint16(b[6:], g.Data3)
	copy(b[8:], g.Data4[:])
	h := hex.EncodeToString(b[:])
	return "{" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:] + "}"
}

func guidFromBytes(b [16]byte) guid {
	g := guid{
		Data1: binary.BigEndian.Uint32(b[0:]),
		Data2: binary.BigEndian.Uint16(b[4:]),
		Data3: binary.BigEndian.Uint16(b[6:]),
	}
	copy(g.Data4[:], b[8:])
	return g
}

// parseGUID reads a GUID in its usual text form, with or without braces:
// {21c32afe-b213-437b-9925-9c9413d572d8}. Hex digits may be of either case.
func parseGUID(s string) (guid, error) {
	t := s
	if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
		t = t[1 : len(t)-1]
	}
	bad := fmt.Errorf("%q is not a GUID: write one like {21c32afe-b213-437b-9925-9c9413d572d8}", s)
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return guid{}, bad
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(t[0:8]+t[9:13]+t[14:18]+t[19:23]+t[24:])); err != nil {
		return guid{}, bad
	}
	return guidFromBytes(b), nil
}

// guidNamespace is the namespace of the adapter GUIDs shunt derives from
// adapter names, {21c32afe-b213-437b-9925-9c9413d572d8}: a random UUID
// made for this purpose. Changing it changes every derived GUID, and with
// it the network profile Windows keeps for the adapter.
func guidNamespace() [16]byte {
	return [16]byte{0x21, 0xc3, 0x2a, 0xfe, 0xb2, 0x13, 0x43, 0x7b, 0x99, 0x25, 0x9c, 0x94, 0x13, 0xd5, 0x72, 0xd8}
}

// nameGUID is the adapter GUID for an adapter named name when Options.GUID
// is empty: the name-based (version 5, SHA-1) UUID of name in
// guidNamespace (RFC 9562, section 5.5). The same name gives the same GUID
// on every run and machine, so Windows recognises the network (and keeps
// its profile: private or public, firewall rules) instead of meeting a new
// one at each start. Names are taken as written: "Shunt" and "shunt" get
// different GUIDs.
func nameGUID(name string) guid {
	h := sha1.New()
	ns := guidNamespace()
	h.Write(ns[:])
	h.Write([]byte(name))
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x50 // version 5
	b[8] = b[8]&0x3f | 0x80 // variant RFC 9562
	return guidFromBytes(b)
}

// adapterGUID is the GUID Open asks Windows to give the adapter: o.GUID
// if set, else nameGUID of the adapter's name.
func adapterGUID(name, requested string) (guid, error) {
	if requested == "" {
		return nameGUID(name), nil
	}
	g, err := parseGUID(requested)
	if err != nil {
		return guid{}, fmt.Errorf("tun GUID: %w", err)
	}
	return g, nil
}
