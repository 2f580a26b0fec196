// Package control is shunt's control API: HTTP with JSON over a Unix
// socket, served by a running shunt (`shunt up`, `shunt daemon`) and used
// by the client commands (`shunt status`, `shunt reload`, ...).
//
// The server decides who may use the socket by the peer's credentials, as
// the kernel reports them for the connection: root, the daemon's own user,
// and members of the configured group. The socket's mode (0660) is only a
// first fence.
//
// Endpoints (all under /v1, all answering JSON; errors are
// {"error": "..."} with a fitting status code):
//
//	GET  /v1/status                    state.Status: profiles, flows, prompts
//	GET  /v1/flows                     {"flows": [state.Flow...]}
//	GET  /v1/prompts                   {"prompts": [state.Prompt...]}
//	GET  /v1/events                    a stream of state.Event, one JSON object a line;
//	                                   Server-Sent Events with Accept: text/event-stream
//	GET  /v1/config                    the configuration as the web console edits it
//	POST /v1/config/check              an edit of the rules or a profile, checked as shunt check
//	                                   does with the edited file in place; nothing is written
//	PUT  /v1/config/rules              the same check, then the file written and reloaded
//	PUT  /v1/config/profiles/{name}    add or replace a profile, likewise
//	DELETE /v1/config/profiles/{name}
//	POST /v1/explain                   body {"destination": "host:port", ...}: shunt explain's answer
//	POST /v1/reload                    read the configuration again; ?reset_removed=1 resets
//	                                   the flows of removed and changed profiles
//	POST /v1/down                      stop shunt, as SIGTERM does
//	POST /v1/profiles/{name}/connect   connect a profile; answers its state.Profile
//	POST /v1/profiles/{name}/disconnect
//	POST /v1/flows/{id}/close          reset a flow
//	POST /v1/prompts/{id}/answer       body {"answer": "..."}; never logged
package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/state"
)

// DefaultSocket is where the control socket is when the configuration
// does not say (control.socket) and a client is not told (--socket,
// SHUNT_SOCKET).
const DefaultSocket = config.DefaultControlSocket

// SocketEnv names the environment variable that tells the client commands
// where the socket is.
const SocketEnv = "SHUNT_SOCKET"

// Backend is the running shunt the control socket serves: the engine. Its
// methods are called from the server's goroutines, concurrently.
type Backend interface {
	// Status is a snapshot of everything at once. The server also reads
	// it to answer 404 for a profile or prompt that does not exist.
	Status() state.Status
	// Reload reads the configuration again and swaps it in. A
	// configuration with errors is refused as a whole, the old one staying
	// in force; the error then holds every problem (file:line and the
	// fix), joined (errors.Join, or an error with Unwrap() []error) or
	// one a line. opts.ResetRemoved resets the running flows of the
	// profiles it removes or changes.
	Reload(ctx context.Context, opts ReloadOptions) error
	// Down starts stopping shunt, as SIGTERM does, and returns at once.
	Down()
	// Connect makes sure the profile has an SSH connection: it returns
	// once one is up, the attempt failed, or ctx ended.
	Connect(ctx context.Context, profile string) error
	// Disconnect closes the profile's SSH connections.
	Disconnect(profile string) error
	// CloseFlow resets the flow; false when no flow has that id.
	CloseFlow(id uint64) bool
	// Answer answers the pending prompt id (of Status().Prompts). Its
	// error must not contain the answer: the server logs it.
	Answer(id, answer string) error
	// Subscribe returns the events from now on, through a buffer of buf
	// events: a subscriber that falls behind loses events, and never
	// slows shunt down. cancel ends the subscription; the backend closes
	// the channel after cancel, or when it stops.
	Subscribe(buf int) (events <-chan state.Event, cancel func())
}

// Explainer is a Backend that explains flows (POST /v1/explain). A
// Backend without it answers 501 there.
type Explainer interface {
	// Explain decides the flow req describes by the configuration in
	// force, as `shunt explain` does: it answers explain.Explanation
	// (any JSON value: this package does not know its type). Its error
	// is the request's fault (a bad port, an unknown user).
	Explain(ctx context.Context, req ExplainRequest) (any, error)
}

// ExplainRequest is POST /v1/explain's body (explain.Request).
type ExplainRequest struct {
	Destination string `json:"destination"`
	Application string `json:"application,omitempty"`
	User        string `json:"user,omitempty"`
	From        string `json:"from,omitempty"`
}

// ConfigViewer is a Backend that shows its configuration as the web
// console edits it (GET /v1/config). A Backend without it answers 501
// there.
type ConfigViewer interface {
	// ConfigView is config.View of the configuration in force, with its
	// shadowed rules (any JSON value).
	ConfigView() (any, error)
}

// ReloadOptions are POST /v1/reload's query parameters.
type ReloadOptions struct {
	// ResetRemoved (reset_removed=1) resets the running flows of
	// profiles the new configuration removes or changes, instead of
	// letting them run on their old SSH connections until they end.
	ResetRemoved bool
}

// ErrNotRunning is what the client's errors wrap when no shunt answers on
// the socket.
var ErrNotRunning = errors.New("shunt is not running")

// ErrUnsupported is NewServer's error where peer credentials cannot be
// read, so that nobody could be allowed in.
// It wraps errors.ErrUnsupported.
var ErrUnsupported = fmt.Errorf("the control socket is not supported on this system: shunt cannot read a Unix socket peer's credentials here: %w", errors.ErrUnsupported)
