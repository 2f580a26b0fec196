package broker

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The hand-built direct-tcpip payload is what ssh.Marshal makes of the
// RFC 4254 message, and what x/crypto's server side parses.
func TestDirectTCPIPPayload(t *testing.T) {
	type msg struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	for _, c := range []struct {
		host string
		port uint16
	}{{"10.1.0.7", 993}, {"db.internal.example", 5432}, {"2001:db8::1", 65535}, {"", 0}} {
		got := directTCPIP(c.host, c.port)
		want := ssh.Marshal(&msg{Host: c.host, Port: uint32(c.port), OrigHost: "127.0.0.1"})
		if !bytes.Equal(got, want) {
			t.Errorf("%s:%d: payload %x, want %x", c.host, c.port, got, want)
		}
		var back msg
		if err := ssh.Unmarshal(got, &back); err != nil || back.Host != c.host || back.Port != uint32(c.port) {
			t.Errorf("%s:%d: parses as %+v, %v", c.host, c.port, back, err)
		}
	}
}
