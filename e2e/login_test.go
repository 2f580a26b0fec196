//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Logins the server refuses, against Debian's OpenSSH sshd as it comes:
// keyboard-interactive on (its compiled-in default) with nothing to ask
// without PAM. A user it does not know and a key it does not accept both
// ended in "ssh: unexpected message type 51 (expected 60)". And a refused
// host key, explained once per connection attempt however many flows it
// refuses.
func TestLoginRefusals(t *testing.T) {
	prerequisites(t)
	topo := newTopology(t)
	sd := startSSHDWith(t, topo.gateway, sshdOptions{
		listen: []string{gatewayAddr},
		extra:  []string{"KbdInteractiveAuthentication yes"},
	})
	target := "172.31.2.2:9003"
	echoOn(t, topo.internal, target)
	fingerprint := func(pub string) string { return strings.Fields(run(t, "ssh-keygen", "-l", "-f", pub))[1] }
	profile := func(user, key, knownHosts string) string {
		return fmt.Sprintf("    host: %s\n    user: %s\n    identity_files: [%s]\n    known_hosts: %s", gatewayAddr, user, key, knownHosts)
	}
	// refused starts shunt with profile and checks that n flows are
	// refused as a closed port would refuse them (RST).
	refused := func(t *testing.T, profile string, n int) *shunt {
		t.Helper()
		sh := startShunt(t, topo, tunnelConfig(topo, profile, ""))
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				c, err := topo.client.dial(ctx, target)
				if err == nil {
					c.Close()
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial: %v, want connection refused", err)
			}
		}
		return sh
	}
	// lines are the log lines of shunt with msg="msg".
	lines := func(sh *shunt, msg string) []string {
		var out []string
		for _, l := range strings.Split(sh.log.String(), "\n") {
			if strings.Contains(l, `msg="`+msg+`"`) {
				out = append(out, l)
			}
		}
		return out
	}
	// loginRefused checks what shunt logged of a refused login: the
	// attempt's error in full, on one line, naming the user, the key
	// file and its fingerprint; the flow's error refers to it.
	loginRefused := func(t *testing.T, sh *shunt, user, key string) {
		t.Helper()
		var failed []string
		waitFor(t, "the refused login and flow in shunt's log", func() bool {
			failed = lines(sh, "SSH connection failed")
			return len(failed) > 0 && len(lines(sh, "flow refused: upstream failed")) > 0
		})
		full := failed[0]
		for _, w := range []string{
			fmt.Sprintf(`SSH server %s:22 (direct) refused the login as \"%s\": `, gatewayAddr, user),
			"publickey with identity file " + key + " (ED25519 " + fingerprint(key+".pub") + ") refused",
			"keyboard-interactive refused without asking anything",
			"the server allows publickey, keyboard-interactive",
			fmt.Sprintf(`Check the user name (\"%s\")`, user),
			"authorized_keys",
		} {
			if !strings.Contains(full, w) {
				t.Errorf("the log line does not say %q:\n%s", w, full)
			}
		}
		if strings.Contains(full, `\n`) {
			t.Errorf("the error holds a line break:\n%s", full)
		}
		flow := lines(sh, "flow refused: upstream failed")[0]
		brief := fmt.Sprintf(`error="profile gw: SSH server %s:22 refused the login as \"%s\" (see the error logged at `, gatewayAddr, user)
		if !strings.Contains(flow, brief) {
			t.Errorf("the refused flow's line does not refer to the login error (%s):\n%s", brief, flow)
		}
		if strings.Contains(sh.log.String(), "unexpected message type") {
			t.Errorf("shunt still logs x/crypto's protocol error:\n%s", sh.log)
		}
	}

	t.Run("a user the server does not know", func(t *testing.T) {
		user := absentUser(t)
		sh := refused(t, profile(user, sd.clientKey, sd.knownHosts), 1)
		loginRefused(t, sh, user, sd.clientKey)
		if !strings.Contains(sd.log.String(), "Invalid user "+user) {
			t.Errorf("sshd did not see the login as %s:\n%s", user, sd.log)
		}
		sh.stop(t)
	})

	t.Run("a key the server does not accept", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "id_unknown")
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
		sh := refused(t, profile("root", key, sd.knownHosts), 1)
		loginRefused(t, sh, "root", key)
		sh.stop(t)
	})

	t.Run("an unknown host key is explained once per attempt, not per flow", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(empty, nil, 0o600)
		const n = 10
		sh := refused(t, profile("root", sd.clientKey, empty), n)
		waitFor(t, "every refused flow in shunt's log", func() bool { return len(lines(sh, "flow refused: upstream failed")) == n })
		long := "If that fingerprint is right, add it with: ssh-keyscan " + gatewayAddr + " >> " + empty
		var times []string
		for _, l := range lines(sh, "SSH connection failed") {
			if !strings.Contains(l, long) || !strings.Contains(l, sd.fingerprint) {
				t.Errorf("the attempt's line does not explain the host key:\n%s", l)
			}
			times = append(times, regexp.MustCompile(`time="[^T]*T(\d\d:\d\d:\d\d)`).FindStringSubmatch(l)[1])
		}
		if got := strings.Count(sh.log.String(), long); got != len(times) || got == 0 {
			t.Errorf("the explanation is in %d lines for %d connection attempts, want one each", got, len(times))
		}
		brief := regexp.MustCompile(`error="profile gw: host key of ` + regexp.QuoteMeta(gatewayAddr) + `:22 is unknown \(see the error logged at (\d\d:\d\d:\d\d)\)`)
		for _, l := range lines(sh, "flow refused: upstream failed") {
			m := brief.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("the flow's line is not the short reference:\n%s", l)
				continue
			}
			// The reference is stamped as the attempt ends, just before
			// its line: the same second, or the one before.
			ok := false
			for _, at := range times {
				a, _ := time.Parse("15:04:05", at)
				if m[1] == at || m[1] == a.Add(-time.Second).Format("15:04:05") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("the flow refers to %s; the attempts were logged at %v", m[1], times)
			}
		}
		sh.stop(t)
	})
}

// absentUser is a user name this machine does not have.
func absentUser(t *testing.T) string {
	t.Helper()
	for range 10 {
		b := make([]byte, 4)
		rand.Read(b)
		name := "nobody" + hex.EncodeToString(b)
		if _, err := user.Lookup(name); err != nil {
			return name
		}
	}
	t.Fatal("no absent user name found")
	return ""
}
