package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"

	"github.com/shunt-dev/shunt/state"
)

// Client talks to a running shunt over its control socket. Use it by
// pointer; it may be used from several goroutines.
type Client struct {
	// Socket is the socket's path; empty means DefaultSocket.
	Socket string

	once sync.Once
	hc   *http.Client
}

// Error is an error that shunt answered.
type Error struct {
	Status  int    // the HTTP status
	Message string // one line
	// Problems are a refused configuration's, one each (Reload).
	Problems []string
}

func (e *Error) Error() string { return e.Message }

func (c *Client) socket() string {
	if c.Socket == "" {
		return DefaultSocket
	}
	return c.Socket
}

func (c *Client) client() *http.Client {
	c.once.Do(func() {
		socket := c.socket()
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				conn, err := d.DialContext(ctx, "unix", socket)
				if err != nil {
					return nil, &dialError{dialFailure(socket, err)}
				}
				return conn, nil
			},
			// The responses are small, and the event stream is read as
			// it comes.
			DisableCompression: true,
		}}
	})
	return c.hc
}

// dialError marks a failure to reach the socket.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dialFailure says, in a line, why the socket could not be reached.
func dialFailure(socket string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: there is no control socket at %s (to reach a shunt serving another one, give --socket PATH or set %s)", ErrNotRunning, socket, SocketEnv)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing answers on the control socket %s (a shunt that ended left it)", ErrNotRunning, socket)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("not allowed to use the control socket %s: it serves root, shunt's own user and the members of control.group", socket)
	}
	return fmt.Errorf("cannot reach shunt on the control socket %s: %w", socket, err)
}

// request sends a request and returns the response when its status is a
// success; else the error shunt answered, or why there was no answer.
func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://shunt"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var de *dialError
		if errors.As(err, &de) {
			return nil, de.err
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("talking to shunt on %s: %w", c.socket(), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb errorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		return &Error{Status: resp.StatusCode, Message: "shunt answered " + resp.Status}
	}
	return &Error{Status: resp.StatusCode, Message: eb.Error, Problems: eb.Errors}
}

// call sends a request and decodes its answer into out (unless nil).
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("an answer from shunt on %s that is not what this client understands: %w", c.socket(), err)
	}
	return nil
}

// Status asks for everything at once.
func (c *Client) Status(ctx context.Context) (state.Status, error) {
	var st state.Status
	err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Flows asks for the flows.
func (c *Client) Flows(ctx context.Context) ([]state.Flow, error) {
	var fl FlowList
	err := c.call(ctx, http.MethodGet, "/v1/flows", nil, &fl)
	return fl.Flows, err
}

// Prompts asks for the pending prompts.
func (c *Client) Prompts(ctx context.Context) ([]state.Prompt, error) {
	var pl PromptList
	err := c.call(ctx, http.MethodGet, "/v1/prompts", nil, &pl)
	return pl.Prompts, err
}

// Reload has shunt read its configuration again. A refused configuration
// is an *Error with every problem in Problems.
func (c *Client) Reload(ctx context.Context) error {
	return c.ReloadWith(ctx, ReloadOptions{})
}

// ReloadWith is Reload with options (reset_removed=1).
func (c *Client) ReloadWith(ctx context.Context, opts ReloadOptions) error {
	path := "/v1/reload"
	if opts.ResetRemoved {
		path += "?reset_removed=1"
	}
	return c.call(ctx, http.MethodPost, path, nil, nil)
}

// Down has shunt stop, as SIGTERM does; it returns once shunt has begun.
func (c *Client) Down(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/v1/down", nil, nil)
}

// Connect has a profile connect, and returns its state once it is
// connected.
func (c *Client) Connect(ctx context.Context, profile string) (state.Profile, error) {
	return c.profileCall(ctx, profile, "connect")
}

// Disconnect closes a profile's connections, and returns its state after.
func (c *Client) Disconnect(ctx context.Context, profile string) (state.Profile, error) {
	return c.profileCall(ctx, profile, "disconnect")
}

func (c *Client) profileCall(ctx context.Context, profile, verb string) (state.Profile, error) {
	var p state.Profile
	if profile == "" {
		return p, errors.New("no profile named: give one of those shunt status shows")
	}
	err := c.call(ctx, http.MethodPost, "/v1/profiles/"+segment(profile)+"/"+verb, nil, &p)
	return p, err
}

// CloseFlow resets a flow.
func (c *Client) CloseFlow(ctx context.Context, id uint64) error {
	return c.call(ctx, http.MethodPost, "/v1/flows/"+strconv.FormatUint(id, 10)+"/close", nil, nil)
}

// Answer answers a pending prompt.
func (c *Client) Answer(ctx context.Context, id, answer string) error {
	if id == "" {
		return errors.New("no prompt named")
	}
	return c.call(ctx, http.MethodPost, "/v1/prompts/"+segment(id)+"/answer", AnswerRequest{Answer: &answer}, nil)
}

// segment escapes s as one path segment, which the server's mux neither
// splits nor cleans away (url.PathEscape leaves "." and ".." as they are).
func segment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(s)
}

// Events subscribes to shunt's events; it returns once shunt has
// subscribed the client, so no event after it is missed (unless the
// client reads too slowly). ctx ends the stream too.
func (c *Client) Events(ctx context.Context) (*EventStream, error) {
	resp, err := c.request(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return nil, err
	}
	return &EventStream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// EventStream is a subscription to shunt's events.
type EventStream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Next waits for the next event. It returns io.EOF when shunt ended the
// stream (it is stopping), another error when the connection broke or the
// context ended.
func (s *EventStream) Next() (state.Event, error) {
	var ev state.Event
	err := s.dec.Decode(&ev)
	return ev, err
}

// Close ends the subscription.
func (s *EventStream) Close() error { return s.body.Close() }
