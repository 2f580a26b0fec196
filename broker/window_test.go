package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// A server that breaks the flow control of a channel: x/crypto's server
// side keeps to the window, so these tests write the packets themselves,
// through the server connection's packet writer (unexported in x/crypto:
// reached by linkname, and found by reflection; a change of x/crypto's
// internals fails the test at link time or in serverPacketWriter).

//go:linkname handshakeWritePacket golang.org/x/crypto/ssh.(*handshakeTransport).writePacket
func handshakeWritePacket(t unsafe.Pointer, p []byte) error

// serverPacketWriter returns a function that writes a raw packet on sc.
func serverPacketWriter(t *testing.T, sc *ssh.ServerConn) func([]byte) error {
	t.Helper()
	conn := reflect.ValueOf(sc).Elem().FieldByName("Conn").Elem() // *connection
	if conn.Kind() != reflect.Pointer || conn.Elem().Type().Name() != "connection" {
		t.Fatalf("x/crypto's server connection is a %v, not a *connection", conn.Type())
	}
	tr := conn.Elem().FieldByName("transport").Elem() // *handshakeTransport
	if tr.Kind() != reflect.Pointer || tr.Elem().Type().Name() != "handshakeTransport" {
		t.Fatalf("x/crypto's transport is a %v, not a *handshakeTransport", tr.Type())
	}
	p := unsafe.Pointer(tr.Pointer())
	return func(b []byte) error { return handshakeWritePacket(p, b) }
}

// clientChannelID is the client's id of ch, the recipient in packets to it.
func clientChannelID(t *testing.T, ch ssh.Channel) uint32 {
	t.Helper()
	v := reflect.ValueOf(ch)
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
			if f := v.Elem().FieldByName("remoteId"); f.IsValid() {
				return uint32(f.Uint())
			}
			if f := v.Elem().FieldByName("channel"); f.IsValid() {
				v = f
				continue
			}
		}
		v = v.Elem()
	}
	t.Fatalf("no remoteId in x/crypto's channel %T", ch)
	return 0
}

// A server that sends more than the channel's window, or adjusts the
// client's window beyond 2^32-1: x/crypto checks both before buffering
// anything (channel.go: handleData, window.add), so what a flow holds
// stays within its 2 MiB window; the connection ends with x/crypto's
// error, which becomes the profile's error, and the flows are reset.
func TestServerBreakingFlowControl(t *testing.T) {
	for _, tc := range []struct {
		name   string
		packet func(id uint32) []byte
		want   string
	}{
		// nil: data packets of 32 KiB, one more than the client's 2 MiB
		// window holds, below. (Not more: x/crypto's reader, 16 packets
		// ahead, would wedge on a full queue once its mux loop ended,
		// and the connection would be noticed by the keepalives only.)
		{"data beyond the window", func(uint32) []byte { return nil }, "wrote too much"},
		{"window adjustment overflowing", func(id uint32) []byte {
			p := []byte{93, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
			binary.BigEndian.PutUint32(p[1:], id)
			return p
		}, "invalid window update"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var writer func([]byte) error
			ready := make(chan struct{})
			_, p := keyedServerWith(t, brokertest.Options{
				Connected: func(sc *ssh.ServerConn) {
					writer = serverPacketWriter(t, sc)
					close(ready)
					sc.Wait()
				},
				Forwarded: onFirstChannel(func(ch ssh.Channel) {
					<-ready
					id := clientChannelID(t, ch)
					if pk := tc.packet(id); pk != nil {
						writer(pk)
						return
					}
					data := make([]byte, 1+4+4+32<<10)
					data[0] = 94
					binary.BigEndian.PutUint32(data[1:], id)
					binary.BigEndian.PutUint32(data[5:], 32<<10)
					for range 2<<20/(32<<10) + 1 {
						if writer(data) != nil {
							return
						}
					}
				}),
			})
			b := newBroker(t, Options{}, p)
			c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The flow does not read: the window is the client's only
			// defence.
			waitUntil(t, func() bool { return !statusOf(b, "gw").Up })
			e := b.Status()[0].Error
			t.Log(e)
			if !strings.Contains(e, tc.want) {
				t.Errorf("the profile's error %q does not contain %q", e, tc.want)
			}
			buf := make([]byte, 64<<10)
			for err == nil {
				_, err = c.Read(buf)
			}
			if !errors.Is(err, ErrConnectionLost) {
				t.Errorf("the flow read %v, want ErrConnectionLost", err)
			}
		})
	}
}
