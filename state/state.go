// Package state is the live state of a running shunt as plain data: what
// `shunt status` shows, what the control API serves and what its events
// carry. It depends on nothing of shunt's: the router fills in flows, the
// broker profiles and prompts, the engine puts them together.
//
// The JSON names are a contract (scripts and tests outside this repository
// read them): add fields, never rename one.
package state

import "time"

// Status is a snapshot of everything at once.
type Status struct {
	// Capture is on while the TUN device and its routes are in place.
	Capture bool `json:"capture"`
	// NoTUN: the configuration has tun.enabled false; shunt serves only
	// its listeners.
	NoTUN    bool      `json:"no_tun,omitempty"`
	Profiles []Profile `json:"profiles"`
	Flows    []Flow    `json:"flows"`
	Prompts  []Prompt  `json:"prompts"`
	// DNS is split DNS while shunt's DNS server runs; absent otherwise.
	DNS *DNS `json:"dns,omitempty"`
	// Listeners are the SOCKS and HTTP proxies and static tunnels shunt
	// serves.
	Listeners []Listener `json:"listeners,omitempty"`
	// Console is the web console; absent when it is not served.
	Console *Console `json:"console,omitempty"`
}

// Console is the web console, as `shunt console` finds it.
type Console struct {
	// Listen is its TCP address (console.listen); empty when it is served
	// only on the control socket, at /console/.
	Listen string `json:"listen,omitempty"`
	// TokenFile holds the login token (readable by shunt's user only).
	TokenFile string `json:"token_file"`
}

// Listener is a way into shunt besides the TUN.
type Listener struct {
	Kind   string `json:"kind"`   // socks, http or static
	Listen string `json:"listen"` // the address it listens on
	// Destination and Profile: a static tunnel's.
	Destination string `json:"destination,omitempty"`
	Profile     string `json:"profile,omitempty"`
	// AllowFrom are the networks whose clients it serves besides loopback.
	AllowFrom []string `json:"allow_from,omitempty"`
	// Clients counts the connections it accepted, Denied those allow_from
	// refused.
	Clients int64 `json:"clients"`
	Denied  int64 `json:"denied"`
}

// DNS is the state of shunt's DNS server.
type DNS struct {
	// Mode is how the system's resolver points at it: systemd-resolved,
	// resolv.conf, or off (nothing changed; whoever wants it asks it).
	Mode string `json:"mode"`
	// Servers are the addresses it answers at (address:port).
	Servers []string `json:"servers"`
	// Upstreams are the system's resolvers from before shunt, which it
	// forwards the other names to.
	Upstreams []string `json:"upstreams"`
	// FakeRanges are the networks fake addresses come from.
	FakeRanges []string `json:"fake_ranges"`
	// Names holds a fake address each; Learned are the addresses that
	// answers from the far side gave, remembered for the rules.
	Names   int        `json:"names"`
	Learned int        `json:"learned"`
	Queries DNSQueries `json:"queries"`
}

// DNSQueries count the queries answered, by how.
type DNSQueries struct {
	Fake      uint64 `json:"fake"`      // from the fake-IP pool
	Forwarded uint64 `json:"forwarded"` // by an upstream
	Through   uint64 `json:"through"`   // by a resolver on the far side
	Failed    uint64 `json:"failed"`    // SERVFAIL: no resolver answered
	Refused   uint64 `json:"refused"`   // REFUSED
	Malformed uint64 `json:"malformed"` // FORMERR, NOTIMP, BADVERS
	// NXDomain counts the answers, of any of the above, that said the
	// name does not exist.
	NXDomain uint64 `json:"nxdomain"`
}

// Connection states of a profile (or of a host-from-application server).
const (
	Idle           = "idle"             // no SSH connection, none wanted
	Connecting     = "connecting"       // a connection attempt is running
	Connected      = "connected"        // at least one connection is up
	Backoff        = "backoff"          // the last attempt failed; waiting before the next
	WaitingForAuth = "waiting-for-auth" // a prompt (password, passphrase, host key) is pending
)

// Profile is the state of a profile's SSH connections, or of those of a
// host-from-application server (Via is then the server, and Name the
// profile whose settings it uses).
type Profile struct {
	Name  string `json:"name"`
	Via   string `json:"via,omitempty"`
	State string `json:"state"`
	// Server is the SSH server connected to, or being tried (host:port).
	Server string `json:"server"`
	// Route is how the server is reached: "direct", a proxy, a jump.
	Route string `json:"route,omitempty"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// Connections up, and channels open on them.
	Connections int `json:"connections"`
	Channels    int `json:"channels"`
	// Sent counts bytes from the applications, Received bytes to them,
	// over the life of the profile.
	Sent       int64 `json:"sent"`
	Received   int64 `json:"received"`
	Reconnects int   `json:"reconnects"`
	// Error is the last connection error, one line, without secrets.
	Error string `json:"error"`
	// Retired: a reload replaced or removed the profile; these are its
	// old connections, which take no new flow and close as their last
	// flow ends.
	Retired bool `json:"retired,omitempty"`
}

// Flow states.
const (
	FlowSettingUp = "setup" // waiting for its upstream
	FlowOpen      = "open"
	FlowClosed    = "closed" // only in a close event
)

// Flow is one captured TCP flow.
type Flow struct {
	ID  uint64 `json:"id"`
	Src string `json:"src"` // the application's address and port
	Dst string `json:"dst"` // where it connected
	// Name is the host name the destination was looked up as, when shunt
	// knows it (Host, for a flow to a name).
	Name string `json:"name"`
	// Host is the name the application connected to, when Dst is a fake
	// address that stands for it: the flow was decided by that name, and
	// its upstream goes to host:port (the SSH server resolves it).
	Host string `json:"host,omitempty"`
	// Via is the listener the flow came to (a SOCKS or HTTP proxy, a
	// static tunnel), empty for a captured flow.
	Via string `json:"via,omitempty"`
	App string `json:"app"` // the executable's path, when looked up
	// UID is the application's user, -1 when not looked up.
	UID     int    `json:"uid"`
	Rule    string `json:"rule"`   // e.g. `#2 "mail"`, as logs name it; empty when no rule matched
	Action  string `json:"action"` // tunnel, direct or block; direct for a tunnel rule's flow that fell back
	Profile string `json:"profile"`
	// Server is the SSH server of a tunnelled flow: the destination host
	// of a host-from-application flow, else the server its profile is
	// connected to (none while a reload's retired connections make that
	// ambiguous).
	Server string `json:"server,omitempty"`
	// Sent counts bytes from the application, Received bytes to it.
	Sent     int64     `json:"sent"`
	Received int64     `json:"received"`
	Started  time.Time `json:"started"`
	State    string    `json:"state"`
}

// Prompt kinds.
const (
	PromptPassword   = "password"
	PromptPassphrase = "passphrase"
	PromptChallenge  = "keyboard-interactive"
	PromptHostKey    = "host-key"
)

// Prompt is a question to the user that a connection waits on.
type Prompt struct {
	ID      string `json:"id"`
	Profile string `json:"profile"`
	// Server is the SSH server (host:port) the connection logs in to: the
	// profile's, or a host-from-application server.
	Server string `json:"server,omitempty"`
	Kind   string `json:"kind"`
	// Message is what to show the user (never an answer).
	Message string `json:"message"`
	// Echo tells whether the answer may be shown while typed.
	Echo    bool      `json:"echo"`
	Created time.Time `json:"created"`
	// For a host-key prompt: the key's fingerprint (SHA256:...), the
	// line that accepting it appends to known_hosts, and that file.
	Fingerprint    string `json:"fingerprint,omitempty"`
	KnownHostsLine string `json:"known_hosts_line,omitempty"`
	KnownHostsFile string `json:"known_hosts_file,omitempty"`
}

// Event kinds.
const (
	EventOpen   = "open"   // a flow opened (Flow)
	EventClose  = "close"  // a flow closed (Flow, with its totals, Reason and Duration)
	EventState  = "state"  // a profile's connection state changed (Profile)
	EventPrompt = "prompt" // a prompt is pending (Prompt)
	// EventBytes: the byte counts of running flows changed (Flows, only
	// those that changed since the last one; Profiles, those whose totals
	// did). Published about once a
	// second while anyone listens and a count changed.
	EventBytes = "bytes"
)

// FlowBytes is a flow's byte counts so far, in a bytes event.
type FlowBytes struct {
	ID       uint64 `json:"id"`
	Sent     int64  `json:"sent"`
	Received int64  `json:"received"`
}

// Event is something that happened, as `shunt flows --follow` streams it.
type Event struct {
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Flow    *Flow     `json:"flow,omitempty"`
	Profile *Profile  `json:"profile"`
	Prompt  *Prompt   `json:"prompt,omitempty"`
	// Reason says why a flow closed or was refused, in a few words.
	Reason string `json:"reason,omitempty"`
	// Duration is a closed flow's life.
	Duration time.Duration `json:"duration,omitempty"`
	// Flows are a bytes event's counts.
	Flows []FlowBytes `json:"flows,omitempty"`
	// Profiles are, in a bytes event, the profiles whose byte totals,
	// channels or connections changed since the last one.
	Profiles []Profile `json:"profiles,omitempty"`
}
