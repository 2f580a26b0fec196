package control

import (
	"os"
	"slices"
	"testing"
)

func TestParseProcStatus(t *testing.T) {
	status := "Name:\tcurl\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1001\t1000\t1001\nGid:\t100\t100\t100\t100\nFDSize:\t64\nGroups:\t4 24 27 990 \nNStgid:\t5\n"
	euid, groups, err := parseProcStatus([]byte(status))
	if err != nil || euid != 1001 || !slices.Equal(groups, []uint32{4, 24, 27, 990}) {
		t.Errorf("= %d, %v, %v; want the effective uid 1001 and groups 4 24 27 990", euid, groups, err)
	}
	// A process without supplementary groups has an empty Groups: line.
	euid, groups, err = parseProcStatus([]byte("Uid:\t0\t0\t0\t0\nGroups:\t\n"))
	if err != nil || euid != 0 || len(groups) != 0 {
		t.Errorf("no groups: = %d, %v, %v", euid, groups, err)
	}
	for _, bad := range []string{"", "Uid:\t1\n", "Groups:\t1\n", "Uid:\t1\nGroups:\t\n", "Uid:\t1\tx\nGroups:\t\n", "Uid:\t1\t1\nGroups:\t1 -2\n", "Uid:\t1\t4294967296\nGroups:\t\n"} {
		if _, _, err := parseProcStatus([]byte(bad)); err == nil {
			t.Errorf("parseProcStatus(%q) took it", bad)
		}
	}
}

func FuzzParseProcStatus(f *testing.F) {
	f.Add([]byte("Uid:\t1000\t1001\t1000\t1001\nGroups:\t4 24 27 990 \n"))
	f.Add([]byte("Uid:\t0\t0\t0\t0\nGroups:\t\n"))
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		euid, groups, err := parseProcStatus(b)
		if err != nil && (euid != 0 || groups != nil) {
			t.Errorf("error %v with results %d, %v", err, euid, groups)
		}
	})
}

// The groups of a process that connects are its own, as the kernel has
// them: this test's.
func TestPeerGroupsOfAProcess(t *testing.T) {
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	got := peerGroups(Peer{PID: os.Getpid(), UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())})
	var wantU []uint32
	for _, g := range want {
		wantU = append(wantU, uint32(g))
	}
	slices.Sort(got)
	slices.Sort(wantU)
	if !slices.Equal(got, wantU) {
		t.Errorf("peerGroups(this process) = %v, want %v", got, wantU)
	}
}
