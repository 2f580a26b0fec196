//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The one user of the test's IMAP server.
const (
	imapUser = "alice"
	imapPass = "imap-secret"
)

// dovecot is Debian's Dovecot IMAP server, with its configuration, user,
// mail, runtime files and log all in a directory of the test's own:
// nothing of /etc/dovecot, /run/dovecot or /var/lib/dovecot is used.
type dovecot struct {
	dir  string
	log  string // its log file
	cmd  *exec.Cmd
	done chan error
	out  *syncBuffer // what it writes to stdout and stderr (errors at start)
}

// startDovecot runs dovecot in the foreground on host, serving IMAP
// without TLS on addr port 143, and stops it (and every process it
// started) when the test ends.
func startDovecot(t *testing.T, host *ns, addr string) *dovecot {
	t.Helper()
	// The configuration below is Dovecot 2.3's (Debian 12's); 2.4 renamed
	// most of these settings (auth_allow_cleartext, mail_driver, passdb
	// NAME { passwd_file_path }) and needs dovecot_config_version.
	ver, err := exec.Command("/usr/sbin/dovecot", "--version").Output()
	if err != nil {
		t.Fatalf("dovecot --version: %v", err)
	}
	if !strings.HasPrefix(string(ver), "2.3.") {
		t.Fatalf("dovecot %s: this test's configuration is written for Dovecot 2.3", strings.TrimSpace(string(ver)))
	}
	// The mail processes run as nobody; the auth processes as the
	// package's dovecot user, the login processes as dovenull. All of them
	// must reach the directory, so it is not t.TempDir's (mode 0700).
	dir, err := os.MkdirTemp("", "shunt-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mail := filepath.Join(dir, "mail")
	if err := os.Mkdir(mail, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mail, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(dir, "passwd")
	// user:password:uid:gid:gecos:home
	entry := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s\n", imapUser, imapPass, nobody, nobody, filepath.Join(mail, imapUser))
	if err := os.WriteFile(passwd, []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &dovecot{dir: dir, log: filepath.Join(dir, "dovecot.log"), done: make(chan error, 1), out: &syncBuffer{}}
	conf := fmt.Sprintf(`# shunt e2e test: IMAP without TLS, one user, everything in %[1]s
protocols = imap
listen = %[2]s
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[3]s
auth_verbose = yes
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = %[4]d
last_valid_uid = %[4]d
passdb {
  driver = passwd-file
  args = %[5]s
}
userdb {
  driver = passwd-file
  args = %[5]s
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = 143
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, addr, d.log, nobody, passwd)
	cfg := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = host.command("/usr/sbin/dovecot", "-F", "-c", cfg)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// ip netns exec execs dovecot: the group is dovecot's and its
	// children's, so the cleanup reaches those its master leaves.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			l, _ := os.ReadFile(d.log)
			t.Logf("dovecot output:\n%s\ndovecot log:\n%s", d.out, l)
		}
	})
	waitFor(t, "dovecot to listen", func() bool {
		select {
		case err := <-d.done:
			d.done <- err
			l, _ := os.ReadFile(d.log)
			t.Fatalf("dovecot exited at start: %v\n%s\n%s", err, d.out, l)
		default:
		}
		c, err := host.dial(t.Context(), net.JoinHostPort(addr, "143"))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return d
}

// stop ends dovecot: SIGTERM, to which its master stops the processes it
// started; then SIGKILL to the process group for anything left.
func (d *dovecot) stop() {
	pgid := d.cmd.Process.Pid
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// logins are the lines of dovecot's log that record a successful login.
func (d *dovecot) logins() []string {
	b, _ := os.ReadFile(d.log)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "imap-login: Info: Login: user=<") {
			out = append(out, l)
		}
	}
	return out
}

// imapSession is an IMAP client's side of a connection (RFC 9051, the
// little of it the test speaks).
type imapSession struct {
	t   *testing.T
	r   *bufio.Reader
	w   io.Writer
	tag int
}

// response is one response from the server: its text, with each literal
// replaced by its {size}, and the literals.
type response struct {
	text     string
	literals [][]byte
}

var literalSize = regexp.MustCompile(`\{(\d+)\}$`)

// read reads one response, and the literals it carries.
func (s *imapSession) read() response {
	s.t.Helper()
	var rsp response
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading from the IMAP server: %v (so far: %q)", err, rsp.text+line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		rsp.text += line
		m := literalSize.FindStringSubmatch(line)
		if m == nil {
			return rsp
		}
		n, _ := strconv.Atoi(m[1])
		lit := make([]byte, n)
		if _, err := io.ReadFull(s.r, lit); err != nil {
			s.t.Fatalf("reading a literal of %d bytes: %v", n, err)
		}
		rsp.literals = append(rsp.literals, lit)
	}
}

// send sends a command line with the next tag, and returns the tag.
func (s *imapSession) send(cmd string) string {
	s.t.Helper()
	s.tag++
	tag := fmt.Sprintf("a%d", s.tag)
	if _, err := io.WriteString(s.w, tag+" "+cmd+"\r\n"); err != nil {
		s.t.Fatalf("sending %s: %v", strings.Fields(cmd)[0], err)
	}
	return tag
}

// finish reads the responses up to tag's, which must be OK, and returns
// them, the tagged one last.
func (s *imapSession) finish(tag string) []response {
	s.t.Helper()
	var out []response
	for {
		rsp := s.read()
		out = append(out, rsp)
		if strings.HasPrefix(rsp.text, tag+" ") {
			if !strings.HasPrefix(rsp.text, tag+" OK") {
				s.t.Fatalf("the server answered %q", rsp.text)
			}
			return out
		}
	}
}

func (s *imapSession) command(cmd string) []response {
	s.t.Helper()
	return s.finish(s.send(cmd))
}

// appendMessage appends msg to mailbox with a synchronizing literal, and
// returns the tagged reply.
func (s *imapSession) appendMessage(mailbox string, msg []byte) string {
	s.t.Helper()
	tag := s.send(fmt.Sprintf("APPEND %s {%d}", mailbox, len(msg)))
	if rsp := s.read(); !strings.HasPrefix(rsp.text, "+") {
		s.t.Fatalf("APPEND: the server answered %q, want a continuation", rsp.text)
	}
	if _, err := s.w.Write(append(msg, "\r\n"...)); err != nil {
		s.t.Fatalf("sending the message: %v", err)
	}
	rsps := s.finish(tag)
	return rsps[len(rsps)-1].text
}

// An IMAP session (Debian's Dovecot) to the internal host, through a
// static tunnel: greeting, LOGIN, APPEND, SELECT, FETCH, LOGOUT; then
// curl's IMAP client fetches the message again. Dovecot's log says where
// both logins came from: the gateway, which only the SSH tunnel reaches
// it from.
func TestStaticTunnelIMAP(t *testing.T) {
	prerequisites(t, "/usr/sbin/dovecot", "socat", "curl", "setpriv")
	topo := newTopology(t)
	sd := startSSHD(t, topo.gateway)
	dc := startDovecot(t, topo.internal, internalAddr)
	sh, _ := startUnprivileged(t, topo, sd, fmt.Sprintf(`static_tunnels:
  - listen: 127.0.0.1:1143
    destination: %s:143
    profile: gw
`, internalAddr))

	msg := []byte(strings.ReplaceAll(`From: Alice <alice@internal.shunt.test>
To: Alice <alice@internal.shunt.test>
Subject: through the static tunnel
Date: Mon, 7 Feb 1994 21:52:25 -0800
Message-ID: <static-tunnel-imap@shunt.test>

This message went from the client, through shunt's static tunnel and the
gateway's sshd, to the IMAP server on the internal host, and back.
`, "\n", "\r\n"))
	var appendUID string
	logins := 0 // sessions that logged in

	t.Run("LOGIN, APPEND, SELECT, FETCH, LOGOUT", func(t *testing.T) {
		// The profile carries the flows of shunt's user alone: the client
		// is nobody too, socat its connection, the test its IMAP.
		client := topo.client.command(asNobody("socat", "STDIO", "TCP:127.0.0.1:1143")...)
		w, err := client.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		r, err := client.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &syncBuffer{}
		client.Stderr = stderr
		if err := client.Start(); err != nil {
			t.Fatal(err)
		}
		// A hung server ends the session (the reads fail) instead of
		// the test binary.
		hang := time.AfterFunc(2*time.Minute, func() { client.Process.Kill() })
		defer hang.Stop()
		defer func() { client.Process.Kill(); client.Wait() }()
		s := &imapSession{t: t, r: bufio.NewReader(r), w: w}

		if g := s.read(); !strings.HasPrefix(g.text, "* OK") {
			t.Fatalf("greeting %q, want * OK", g.text)
		}
		s.command(fmt.Sprintf("LOGIN %s %s", imapUser, imapPass))
		ok := s.appendMessage("INBOX", msg)
		if m := regexp.MustCompile(`\[APPENDUID \d+ (\d+)\]`).FindStringSubmatch(ok); m != nil {
			appendUID = m[1]
		} else {
			t.Errorf("APPEND answered %q, without APPENDUID", ok)
		}
		exists := false
		for _, rsp := range s.command("SELECT INBOX") {
			exists = exists || rsp.text == "* 1 EXISTS"
		}
		if !exists {
			t.Fatal("SELECT INBOX: no * 1 EXISTS after the APPEND")
		}
		var got []byte
		for _, rsp := range s.command("FETCH 1 BODY[]") {
			if strings.HasPrefix(rsp.text, "* 1 FETCH ") && strings.Contains(rsp.text, "BODY[] {") && len(rsp.literals) == 1 {
				got = rsp.literals[0]
			}
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("FETCH 1 BODY[] returned %q, appended %q", got, msg)
		}
		logins++
		bye := false
		for _, rsp := range s.command("LOGOUT") {
			bye = bye || strings.HasPrefix(rsp.text, "* BYE")
		}
		if !bye {
			t.Error("LOGOUT: no * BYE")
		}
		// The server closes the connection, and socat exits.
		w.Close()
		if rest, _ := io.ReadAll(s.r); len(rest) > 0 {
			t.Errorf("after LOGOUT the server sent %q", rest)
		}
		if err := client.Wait(); err != nil {
			t.Errorf("socat: %v\n%s", err, stderr)
		}
	})

	t.Run("curl fetches the message by its UID", func(t *testing.T) {
		if appendUID == "" {
			t.Skip("no message to fetch: the session failed")
		}
		// curl logs in with AUTHENTICATE PLAIN (SASL), not LOGIN.
		out, err := topo.client.command(asNobody("curl", "-sS", "--max-time", "60", "--user", imapUser+":"+imapPass,
			"imap://127.0.0.1:1143/INBOX/;UID="+appendUID)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl (UID %q): %v\n%s", appendUID, err, out)
		}
		if !bytes.Equal(out, msg) {
			t.Fatalf("curl fetched %q, appended %q", out, msg)
		}
		logins++
	})

	t.Run("dovecot saw the logins come from the gateway", func(t *testing.T) {
		if logins == 0 {
			t.Skip("no session logged in")
		}
		waitFor(t, "dovecot to log the logins", func() bool { return len(dc.logins()) >= logins })
		for _, l := range dc.logins() {
			if !strings.Contains(l, "user=<"+imapUser+">") || !strings.Contains(l, "rip="+gatewayInner+",") {
				t.Errorf("a login not from the gateway's inner address %s: %s", gatewayInner, l)
			}
		}
		if l := sh.log.String(); strings.Contains(l, "level=error") || strings.Contains(l, "flow refused") {
			t.Errorf("shunt logged an error or a refusal:\n%s", l)
		}
	})
	sh.stop(t)
}
