package control

import (
	"strings"
	"testing"
)

func TestCheckSocketDir(t *testing.T) {
	for _, names := range [][]string{nil, {"shunt.sock"}, {"SHUNT.SOCK"}} {
		if err := checkSocketDir(`C:\run\shunt`, "shunt.sock", names); err != nil {
			t.Errorf("%q: %v", names, err)
		}
	}
	err := checkSocketDir(`C:\Users\bob`, "shunt.sock", []string{"shunt.sock", "a", "b", "c", "d"})
	if err == nil || !strings.Contains(err.Error(), `C:\Users\bob holds other files (a, b, c, ...)`) || !strings.Contains(err.Error(), "set control.socket") {
		t.Errorf("a shared directory: %v", err)
	}
}

func TestTokenAdmits(t *testing.T) {
	for _, tt := range []struct {
		name    string
		system  bool
		attrs   uint32
		present bool
		want    bool
	}{
		{"SYSTEM", true, 0, false, true},
		{"elevated administrator", false, 0x4 | 0x1 | 0x2, true, true},
		{"filtered administrator (UAC)", false, 0x10, true, false},
		{"enabled yet deny-only", false, 0x4 | 0x10, true, false},
		{"user", false, 0, false, false},
	} {
		if got := tokenAdmits(tt.system, tt.attrs, tt.present); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
