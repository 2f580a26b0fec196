package tun

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckName holds each OS's name rules, whichever OS runs it.
func TestCheckName(t *testing.T) {
	long := func(r string, n int) string { return strings.Repeat(r, n) }
	for _, tc := range []struct {
		goos, name string
		why        string // a part of the reason; "" = valid
	}{
		{"linux", "shunt0", ""},
		{"linux", "a", ""},
		{"linux", "tun-corp_1.x", ""},
		{"linux", long("a", 15), ""},
		{"linux", long("a", 16), "16 bytes long: use at most 15"},
		{"linux", "", "empty"},
		{"linux", ".", "reserved"},
		{"linux", "..", "reserved"},
		{"linux", "...", ""},
		{"linux", "a/b", `'/'`},
		{"linux", "a:b", `':'`},
		{"linux", "a\x00b", `'\x00'`},
		{"linux", "a b", "white space"},
		{"linux", "a\tb", "white space"},
		{"linux", "a\vb", "white space"},
		{"linux", "shunt%d", "choose the number"},
		{"linux", "tà", "0xa0"},
		{"linux", "tü", ""}, // ü is c3 bc: no byte the kernel calls space
		{"linux", "ünïcödé", ""},
		{"linux", long("ü", 8), "16 bytes long"},

		{"darwin", "utun", ""},
		{"darwin", "utun0", ""},
		{"darwin", "utun9", ""},
		{"darwin", "utun4294967294", ""},
		{"darwin", "utun4294967295", "largest unit"},
		{"darwin", "utun99999999999999999999", "largest unit"},
		{"darwin", "utun07", "would name it utun7"},
		{"darwin", "utun00", "would name it utun0"},
		{"darwin", "utun+1", "utunN"},
		{"darwin", "utun-1", "utunN"},
		{"darwin", "utun5x", "utunN"},
		{"darwin", "utun ", "utunN"},
		{"darwin", "UTUN", "utunN"},
		{"darwin", "shunt0", "utunN"},
		{"darwin", "", "utunN"},
		{"darwin", "tun0", "utunN"},

		{"windows", "shunt", ""},
		{"windows", "shunt corp (work)", ""},
		{"windows", "Tunnel über SSH", ""},
		{"windows", "隧道", ""},
		{"windows", long("a", 127), ""},
		{"windows", long("a", 128), "128 UTF-16 code units long"},
		{"windows", long("😀", 63), ""},                           // 126 code units
		{"windows", long("😀", 64), "128 UTF-16 code units long"}, // surrogate pairs count twice
		{"windows", long("ü", 127), ""},                          // 254 bytes, 127 units
		{"windows", "", "empty"},
		{"windows", "a\\b", `'\\'`},
		{"windows", "a/b", `'/'`},
		{"windows", "a:b", `':'`},
		{"windows", "a*b", `'*'`},
		{"windows", "a?b", `'?'`},
		{"windows", `a"b`, `'"'`},
		{"windows", "a<b", `'<'`},
		{"windows", "a>b", `'>'`},
		{"windows", "a|b", `'|'`},
		{"windows", "a\x00b", "control character U+0000"},
		{"windows", "a\nb", "control character U+000A"},
		{"windows", " shunt", "white space"},
		{"windows", "shunt ", "white space"},
		{"windows", "a\xffb", "not valid UTF-8"},

		{"freebsd", "shunt0", ""},
		{"freebsd", long("a", 16), "16 bytes"},
	} {
		err := checkName(tc.goos, tc.name)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("checkName(%s, %q) = %v, want nil", tc.goos, tc.name, err)
		case tc.why != "" && err == nil:
			t.Errorf("checkName(%s, %q) = nil, want an error saying %q", tc.goos, tc.name, tc.why)
		case tc.why != "":
			var ne *NameError
			if !errors.As(err, &ne) || ne.Name != tc.name || ne.GOOS != tc.goos {
				t.Errorf("checkName(%s, %q) = %#v, want a *NameError for that name and OS", tc.goos, tc.name, err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("checkName(%s, %q) = %q, want it to say %q", tc.goos, tc.name, err, tc.why)
			}
		}
	}
}

func TestNameErrorText(t *testing.T) {
	err := checkName("linux", "a-name-far-too-long")
	want := `"a-name-far-too-long" is not a valid interface name on linux: it is 19 bytes long: use at most 15`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// TestDefaultNames: each OS's default is a name it takes, and the one
// built in here is this OS's.
func TestDefaultNames(t *testing.T) {
	for goos, want := range map[string]string{"linux": "shunt0", "darwin": "utun", "windows": "shunt", "freebsd": "shunt0"} {
		got := defaultName(goos)
		if got != want {
			t.Errorf("defaultName(%s) = %q, want %q", goos, got, want)
		}
		if err := checkName(goos, got); err != nil {
			t.Errorf("the default name on %s is refused: %v", goos, err)
		}
	}
	if err := CheckName(DefaultName); err != nil {
		t.Errorf("DefaultName %q: %v", DefaultName, err)
	}
}

// TestNameGUID checks the derived GUIDs against Python's uuid.uuid5 in
// the same namespace, and that they are version 5 GUIDs that stay put.
func TestNameGUID(t *testing.T) {
	for name, want := range map[string]string{
		// python3 -c 'import uuid; print(uuid.uuid5(uuid.UUID("21c32afe-b213-437b-9925-9c9413d572d8"), "shunt"))'
		"shunt":      "{1df91b6b-83b6-5acc-9750-3defbad6d0d9}",
		"Shunt":      "{c45069d5-b729-5c08-877d-1ca3f3b04453}",
		"shunt-corp": "{9950abe3-4dd3-540a-bc87-a750d10bdd5a}",
		"é":          "{281ecfe9-7585-5104-8336-f6e6558715c1}",
	} {
		if got := nameGUID(name).String(); got != want {
			t.Errorf("nameGUID(%q) = %s, want %s", name, got, want)
		}
		g, err := adapterGUID(name, "")
		if err != nil || g != nameGUID(name) {
			t.Errorf("adapterGUID(%q, \"\") = %v, %v; want the derived GUID", name, g, err)
		}
	}
}

func TestParseGUID(t *testing.T) {
	want := guid{Data1: 0x21c32afe, Data2: 0xb213, Data3: 0x437b, Data4: [8]byte{0x99, 0x25, 0x9c, 0x94, 0x13, 0xd5, 0x72, 0xd8}}
	for _, s := range []string{
		"{21c32afe-b213-437b-9925-9c9413d572d8}",
		"21c32afe-b213-437b-9925-9c9413d572d8",
		"{21C32AFE-B213-437B-9925-9C9413D572D8}",
	} {
		g, err := parseGUID(s)
		if err != nil || g != want {
			t.Errorf("parseGUID(%q) = %v, %v; want %v", s, g, err, want)
		}
		if g, err := adapterGUID("shunt", s); err != nil || g != want {
			t.Errorf("adapterGUID(shunt, %q) = %v, %v; want the GUID given", s, g, err)
		}
	}
	if got := want.String(); got != "{21c32afe-b213-437b-9925-9c9413d572d8}" {
		t.Errorf("String() = %s", got)
	}
	for _, s := range []string{
		"", "{}", "21c32afe-b213-437b-9925-9c9413d572d", "{21c32afe-b213-437b-9925-9c9413d572d8",
		"21c32afeb213437b99259c9413d572d8", "21c32afe_b213-437b-9925-9c9413d572d8",
		"21c32afe-b213-437b-9925-9c9413d572dg", "{21c32afe-b213-437b-9925-9c9413d572d8}x",
		"{{21c32afe-b213-437b-9925-9c9413d572d8}}",
	} {
		if g, err := parseGUID(s); err == nil {
			t.Errorf("parseGUID(%q) = %v, want an error", s, g)
		} else if !strings.Contains(err.Error(), "is not a GUID") {
			t.Errorf("parseGUID(%q): %v", s, err)
		}
		if _, err := adapterGUID("shunt", s); s != "" && err == nil {
			t.Errorf("adapterGUID(shunt, %q) took it", s)
		}
	}
}

// FuzzParseGUID: whatever parses prints back as the same GUID.
func FuzzParseGUID(f *testing.F) {
	for _, s := range []string{"{21c32afe-b213-437b-9925-9c9413d572d8}", "21C32AFE-B213-437B-9925-9C9413D572D8", "{}", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := parseGUID(s)
		if err != nil {
			return
		}
		h, err := parseGUID(g.String())
		if err != nil || h != g {
			t.Fatalf("%q parsed to %v, whose text %s parses to %v, %v", s, g, g, h, err)
		}
		if !strings.EqualFold(strings.Trim(s, "{}"), strings.Trim(g.String(), "{}")) {
			t.Fatalf("%q parsed to %v", s, g)
		}
	})
}

// FuzzCheckName: no name panics any OS's check, and every name accepted
// on Linux fits IFNAMSIZ.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"shunt0", "utun7", "a b", "ü", "%d", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, goos := range []string{"linux", "darwin", "windows"} {
			_ = checkName(goos, name)
		}
		if checkName("linux", name) == nil && (len(name) == 0 || len(name) > 15 || strings.ContainsAny(name, "/: \t\n\x00")) {
			t.Fatalf("linux took %q", name)
		}
		if checkName("darwin", name) == nil && !strings.HasPrefix(name, "utun") {
			t.Fatalf("darwin took %q", name)
		}
	})
}
