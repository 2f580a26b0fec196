package tun

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func TestMemoryBatchRead(t *testing.T) {
	m := NewMemory(1500, 4)
	for i := range 6 {
		m.Inject([]byte{byte(i), 1, 2})
	}
	bufs := make([][]byte, m.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	sizes := make([]int, len(bufs))
	n, err := m.Read(bufs, sizes, Headroom)
	if err != nil || n != 4 {
		t.Fatalf("first Read = %d, %v; want 4 packets", n, err)
	}
	n, err = m.Read(bufs, sizes, Headroom)
	if err != nil || n != 2 {
		t.Fatalf("second Read = %d, %v; want the 2 left", n, err)
	}
	if got := bufs[1][Headroom : Headroom+sizes[1]]; !bytes.Equal(got, []byte{5, 1, 2}) {
		t.Fatalf("packet 5 = %v", got)
	}
}

func TestMemoryWriteAndClose(t *testing.T) {
	m := NewMemory(1500, 1)
	buf := append(make([]byte, Headroom), 'x', 'y')
	if n, err := m.Write([][]byte{buf}, Headroom); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := <-m.Outbound(); string(got) != "xy" {
		t.Fatalf("outbound = %q", got)
	}
	m.Close()
	_, err := m.Read([][]byte{make([]byte, 100)}, []int{0}, 0)
	if !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close = %v, want os.ErrClosed", err)
	}
	if m.Inject([]byte{1}) {
		t.Fatal("Inject after Close succeeded")
	}
}
