package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/state"
)

// Options configure a Server.
type Options struct {
	// Socket is the socket's path (control.socket); empty means
	// DefaultSocket.
	Socket string
	// Group (control.group) names the group whose members may use the
	// socket besides root and the daemon's user: a name, or a gid. The
	// socket's group is set to it.
	Group string
	// Backend is what the socket serves.
	Backend Backend
	// Log gets a line for every refused request and every change asked
	// for; nil means logrus's standard logger.
	Log logrus.FieldLogger
	// Pprof serves Go's runtime profiles at /debug/pprof/, to root and
	// the daemon's own user only (see pprofRoutes).
	Pprof bool
}

// Server serves the control API on a Unix socket.
type Server struct {
	socket  string
	backend Backend
	log     logrus.FieldLogger
	access  access
	groups  func(Peer) []uint32 // a peer's supplementary groups
	pprof   bool
	mux     *http.ServeMux
	hs      *http.Server

	ctx    context.Context // ends the event streams at Close
	cancel context.CancelFunc
	served chan struct{} // closed when Serve has returned

	// configMu serialises the saves of the configuration.
	configMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// maxEventsBody is as much of a body as GET /v1/events reads past.
const maxEventsBody = 64 << 10

// eventBuffer is how many events a stream holds for a client that reads
// slowly before it loses some.
const eventBuffer = 256

// maxAnswer bounds a prompt answer's body.
const maxAnswer = 64 << 10

// NewServer makes the socket and serves it until Close. The socket's
// directory is made (0755) when missing; a socket left by a shunt that
// ended is replaced, but NewServer refuses to start while another process
// answers on it. The socket's mode is 0660, its group opts.Group's.
func NewServer(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("control: no backend")
	}
	if !peerCredentialsSupported {
		return nil, ErrUnsupported
	}
	a := access{self: daemonUID()}
	if opts.Group != "" {
		if err := groupSupported(); err != nil {
			return nil, err
		}
		gid, err := lookupGroup(opts.Group)
		if err != nil {
			return nil, err
		}
		a.group, a.gid = opts.Group, gid
	}
	s := newServer(opts, a, peerGroups)
	ln, err := listen(s.socket, a)
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(s.served)
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.WithError(err).Error("control socket: serving stopped")
		}
	}()
	s.log.WithField("socket", s.socket).Infof("control socket: serving %s", a.serves())
	return s, nil
}

func newServer(opts Options, a access, groups func(Peer) []uint32) *Server {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		socket:  opts.Socket,
		backend: opts.Backend,
		log:     opts.Log,
		access:  a,
		groups:  groups,
		pprof:   opts.Pprof,
		ctx:     ctx,
		cancel:  cancel,
		served:  make(chan struct{}),
	}
	s.mux = s.routes()
	s.hs = &http.Server{
		Handler:           s,
		ConnContext:       s.connContext,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(debugWriter{s.log}, "control socket: ", 0),
	}
	return s
}

// Socket is the socket's path.
func (s *Server) Socket() string { return s.socket }

// closeGrace bounds how long Close waits for requests to finish.
const closeGrace = 5 * time.Second

// Close stops serving: the socket is removed, the event streams end and
// the requests still running are cancelled; Close waits (briefly) for them
// to finish, then closes every connection.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		defer cancel()
		if err := s.hs.Shutdown(ctx); err != nil {
			s.closeErr = s.hs.Close()
		}
		<-s.served
	})
	return s.closeErr
}

// maxSocketPath is the longest path a Unix socket address holds (Linux's
// sun_path is 108 bytes with the terminating NUL; BSDs' 104).
const maxSocketPath = 103

// listen makes the socket at path, for a. Who may reach it is each
// system's (sock_unix.go, sock_windows.go): the socket's mode and group,
// or its directory's DACL.
func listen(path string, a access) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is %d bytes long, and a Unix socket's can be at most %d: set control.socket to a shorter one", path, len(path), maxSocketPath)
	}
	if err := prepareSocketDir(path); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := restrictSocket(path, a); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// removeStale removes a socket that a shunt which ended left at path, and
// refuses to take the path from a process that still answers on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: the path exists and is not a socket: remove it, or set control.socket to another path", path)
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another shunt is running, it answers there: stop it (shunt down --socket %s), or set control.socket to another path", path, path)
	}
	if !connRefused(err) {
		return fmt.Errorf("control socket %s: cannot tell whether another shunt answers there: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: removing the one a shunt that ended left: %w", err)
	}
	return nil
}

// debugWriter turns net/http's error log into debug lines.
type debugWriter struct{ log logrus.FieldLogger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

// connAccess is the decision about one connection's peer.
type connAccess struct {
	peer Peer
	err  error // why the peer may not use the socket; nil if it may
}

type accessKey struct{}

// connContext reads the peer's credentials once per connection, and
// decides.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	ca := &connAccess{}
	if uc, ok := c.(*net.UnixConn); !ok {
		ca.err = fmt.Errorf("a %T is not a Unix socket connection", c)
	} else if p, err := peerOf(uc); err != nil {
		ca.err = err
	} else {
		ca.peer, ca.err = p, s.access.allow(p, s.groups)
	}
	return context.WithValue(ctx, accessKey{}, ca)
}

// ServeHTTP lets the peers that may use the socket in.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ca, _ := r.Context().Value(accessKey{}).(*connAccess)
	if ca == nil {
		ca = &connAccess{err: errors.New("the peer's credentials are unknown")}
	}
	if ca.err != nil {
		s.log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path}).Warnf("control socket: refused: %v", ca.err)
		writeError(w, http.StatusForbidden, ca.err.Error())
		return
	}
	s.mux.ServeHTTP(w, r)
}

// APIHandler is the /v1 API without the socket's peer-credential gate,
// for the web console, which puts its own in front (a session, the Host
// and Origin checks). It serves /v1/ only: not the profiles (pprof) nor
// the console itself. Its requests carry no peer.
func (s *Server) APIHandler() http.Handler { return apiOnly(s.mux) }

// HandleConsole serves h at /console/ on the socket (h sees the paths
// without /console), behind the peer-credential gate.
func (s *Server) HandleConsole(h http.Handler) {
	s.mux.Handle("/console/", http.StripPrefix("/console", h))
}

// NewHandler is the /v1 API of backend alone, without a socket: what
// APIHandler serves, where there is no control socket (Windows), and for
// tests.
func NewHandler(backend Backend, log logrus.FieldLogger) http.Handler {
	return apiOnly(newServer(Options{Backend: backend, Log: log}, access{}, nil).mux)
}

func apiOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s (this shunt serves the /v1 API)", r.URL.Path))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// logFor is the log with the peer that asked.
func (s *Server) logFor(r *http.Request) logrus.FieldLogger {
	ca, _ := r.Context().Value(accessKey{}).(*connAccess)
	if ca == nil {
		return s.log
	}
	f := logrus.Fields{"peer_uid": ca.peer.UID}
	if ca.peer.PID > 0 {
		f["peer_pid"] = ca.peer.PID
	}
	return s.log.WithFields(f)
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	// Each path takes one method; a pattern without one lets every
	// error be JSON (the mux's own 405 is text).
	route := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != method {
				w.Header().Set("Allow", method)
				writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use %s", r.Method, path, method))
				return
			}
			h(w, r)
		})
	}
	route(http.MethodGet, "/v1/status", s.getStatus)
	route(http.MethodGet, "/v1/flows", s.getFlows)
	route(http.MethodGet, "/v1/prompts", s.getPrompts)
	route(http.MethodGet, "/v1/events", s.getEvents)
	route(http.MethodGet, "/v1/config", s.getConfig)
	route(http.MethodPost, "/v1/config/check", s.checkConfig)
	route(http.MethodPut, "/v1/config/rules", s.putRules)
	mux.HandleFunc("/v1/config/profiles/", s.configProfile)
	route(http.MethodPost, "/v1/explain", s.explain)
	route(http.MethodPost, "/v1/reload", s.reload)
	route(http.MethodPost, "/v1/down", s.down)
	// /v1/profiles/{name}/connect and .../disconnect: the mux's
	// wildcard cannot take a name that is "/" (escaped, %2F, it looks
	// like a trailing slash to the mux), so these paths are read here.
	mux.HandleFunc("/v1/profiles/", func(w http.ResponseWriter, r *http.Request) {
		name, verb, ok := parseProfilePath(r.URL.EscapedPath())
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s (this shunt serves /v1/profiles/NAME/connect and /v1/profiles/NAME/disconnect)", r.URL.Path))
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s /v1/profiles/{name}/%s: use POST", r.Method, verb))
			return
		}
		if verb == "connect" {
			s.connect(w, r, name)
		} else {
			s.disconnect(w, r, name)
		}
	})
	route(http.MethodPost, "/v1/flows/{id}/close", s.closeFlow)
	route(http.MethodPost, "/v1/prompts/{id}/answer", s.answer)
	if s.pprof {
		s.pprofRoutes(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s (this shunt serves the /v1 API)", r.URL.Path))
	})
	return mux
}

// status is the backend's, with empty lists rather than null ones.
func (s *Server) status() state.Status {
	st := s.backend.Status()
	if st.Profiles == nil {
		st.Profiles = []state.Profile{}
	}
	if st.Flows == nil {
		st.Flows = []state.Flow{}
	}
	if st.Prompts == nil {
		st.Prompts = []state.Prompt{}
	}
	return st
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}

// FlowList is GET /v1/flows's answer.
type FlowList struct {
	Flows []state.Flow `json:"flows"`
}

func (s *Server) getFlows(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, FlowList{s.status().Flows})
}

// PromptList is GET /v1/prompts's answer.
type PromptList struct {
	Prompts []state.Prompt `json:"prompts"`
}

func (s *Server) getPrompts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, PromptList{s.status().Prompts})
}

// getEvents streams events, one JSON object a line, flushed as they come,
// until the client goes, the backend stops, or the server closes. A
// client that accepts text/event-stream (a browser's EventSource) gets
// them as Server-Sent Events: each a message "data: JSON\n\n".
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	// A GET's body means nothing here, but until it is read the HTTP
	// server does not watch the connection, and would not see the
	// client go: its subscription would last until the next event
	// failed to reach it.
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxEventsBody)); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("GET /v1/events takes no body (reading it: %v)", err))
		return
	}
	sse := acceptsEventStream(r.Header.Values("Accept"))
	events, cancel := s.backend.Subscribe(eventBuffer)
	defer cancel()
	rc := http.NewResponseController(w)
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.WriteHeader(http.StatusOK)
	// The headers tell the client that it is subscribed.
	if rc.Flush() != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if sse {
				if _, err := io.WriteString(w, "data: "); err != nil {
					return
				}
			}
			// Encode ends the JSON with a newline; SSE's blank line
			// ends the message.
			if enc.Encode(ev) != nil {
				return
			}
			if sse {
				if _, err := io.WriteString(w, "\n"); err != nil {
					return
				}
			}
			// Events already waiting go out with this one.
			if len(events) == 0 && rc.Flush() != nil {
				return
			}
		}
	}
}

// acceptsEventStream reports whether the Accept headers name
// text/event-stream.
func acceptsEventStream(accept []string) bool {
	for _, a := range accept {
		for part := range strings.SplitSeq(a, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// maxExplain bounds POST /v1/explain's body.
const maxExplain = 16 << 10

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	ex, ok := s.backend.(Explainer)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this shunt does not explain flows here: use shunt explain")
		return
	}
	var req ExplainRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxExplain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Destination == "" {
		writeError(w, http.StatusBadRequest, `the body must be one JSON object, {"destination": "host:port", "application": "...", "user": "...", "from": "..."}, the destination given`)
		return
	}
	e, err := ex.Explain(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	cv, ok := s.backend.(ConfigViewer)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this shunt does not show its configuration here")
		return
	}
	v, err := cv.ConfigView()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// Reloaded is POST /v1/reload's answer.
type Reloaded struct {
	Reloaded bool `json:"reloaded"`
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	log := s.logFor(r)
	var opts ReloadOptions
	switch v := r.URL.Query().Get("reset_removed"); v {
	case "", "0", "false":
	case "1", "true":
		opts.ResetRemoved = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reset_removed=%q: use reset_removed=1 (or 0)", v))
		return
	}
	log.WithField("reset_removed", opts.ResetRemoved).Info("control socket: reload asked for")
	if err := s.backend.Reload(r.Context(), opts); err != nil {
		problems := problemLines(err)
		log.WithField("problems", len(problems)).Warn("control socket: the configuration was refused; the old one stays in force")
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{
			Error:  "the configuration was refused, the old one stays in force: " + strings.Join(problems, "; "),
			Errors: problems,
		})
		return
	}
	writeJSON(w, http.StatusOK, Reloaded{true})
}

// problemLines are a refused configuration's problems, one a line.
func problemLines(err error) []string {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []string
	for _, e := range errs {
		for l := range strings.Lines(e.Error()) {
			if l = strings.TrimRight(l, "\r\n"); strings.TrimSpace(l) != "" {
				out = append(out, l)
			}
		}
	}
	if len(out) == 0 {
		out = []string{"the configuration was refused, without a reason"}
	}
	return out
}

// Stopping is POST /v1/down's answer.
type Stopping struct {
	Stopping bool `json:"stopping"`
}

func (s *Server) down(w http.ResponseWriter, r *http.Request) {
	s.logFor(r).Info("control socket: stop asked for")
	s.backend.Down()
	writeJSON(w, http.StatusAccepted, Stopping{true})
}

// profileIn finds a profile's state: its own entry, else that of one of its
// host-from-application servers.
func profileIn(st state.Status, name string) (state.Profile, bool) {
	var found *state.Profile
	for i := range st.Profiles {
		p := &st.Profiles[i]
		if p.Name != name {
			continue
		}
		if p.Via == "" {
			return *p, true
		}
		if found == nil {
			found = p
		}
	}
	if found == nil {
		return state.Profile{}, false
	}
	return *found, true
}

func (s *Server) unknownProfile(w http.ResponseWriter, st state.Status, name string) {
	var names []string
	for _, p := range st.Profiles {
		if p.Via == "" {
			names = append(names, strconv.Quote(p.Name))
		}
	}
	msg := fmt.Sprintf("no profile %q", name)
	if len(names) > 0 {
		msg += ": use one of " + strings.Join(names, ", ")
	} else {
		msg += ": shunt has no profiles"
	}
	writeError(w, http.StatusNotFound, msg)
}

// parseProfilePath reads a profile's name and the verb (connect,
// disconnect) from an escaped path /v1/profiles/NAME/VERB, NAME being one
// segment, escaped.
func parseProfilePath(escaped string) (name, verb string, ok bool) {
	rest, ok := strings.CutPrefix(escaped, "/v1/profiles/")
	if !ok {
		return "", "", false
	}
	escName, verb, ok := strings.Cut(rest, "/")
	if !ok || escName == "" || (verb != "connect" && verb != "disconnect") {
		return "", "", false
	}
	name, err := url.PathUnescape(escName)
	if err != nil {
		return "", "", false
	}
	return name, verb, true
}

func (s *Server) connect(w http.ResponseWriter, r *http.Request, name string) {
	if st := s.backend.Status(); !hasProfile(st, name) {
		s.unknownProfile(w, st, name)
		return
	}
	log := s.logFor(r).WithField("profile", name)
	log.Info("control socket: connect asked for")
	if err := s.backend.Connect(r.Context(), name); err != nil {
		log.WithError(err).Warn("control socket: connect failed")
		writeError(w, http.StatusBadGateway, fmt.Sprintf("connecting profile %q: %v", name, err))
		return
	}
	p, _ := profileIn(s.backend.Status(), name)
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) disconnect(w http.ResponseWriter, r *http.Request, name string) {
	if st := s.backend.Status(); !hasProfile(st, name) {
		s.unknownProfile(w, st, name)
		return
	}
	log := s.logFor(r).WithField("profile", name)
	log.Info("control socket: disconnect asked for")
	if err := s.backend.Disconnect(name); err != nil {
		log.WithError(err).Warn("control socket: disconnect failed")
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("disconnecting profile %q: %v", name, err))
		return
	}
	p, _ := profileIn(s.backend.Status(), name)
	writeJSON(w, http.StatusOK, p)
}

func hasProfile(st state.Status, name string) bool {
	_, ok := profileIn(st, name)
	return ok
}

// ParseFlowID reads a flow id as the API's paths and the client
// commands take it: a decimal number.
func ParseFlowID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("flow id %q is not a number: use an id that shunt flows shows", s)
	}
	return id, nil
}

// Closed is POST /v1/flows/{id}/close's answer.
type Closed struct {
	Closed uint64 `json:"closed"`
}

func (s *Server) closeFlow(w http.ResponseWriter, r *http.Request) {
	id, err := ParseFlowID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	log := s.logFor(r).WithField("flow", id)
	if !s.backend.CloseFlow(id) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no flow %d (it may have ended already)", id))
		return
	}
	log.Info("control socket: flow reset as asked")
	writeJSON(w, http.StatusOK, Closed{id})
}

// AnswerRequest is POST /v1/prompts/{id}/answer's body.
type AnswerRequest struct {
	Answer *string `json:"answer"`
}

// Answered is POST /v1/prompts/{id}/answer's answer.
type Answered struct {
	Answered string `json:"answered"`
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req AnswerRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAnswer))
	dec.DisallowUnknownFields()
	// The decoder's error would quote the body: it is not passed on.
	if err := dec.Decode(&req); err != nil || req.Answer == nil {
		writeError(w, http.StatusBadRequest, `the body must be one JSON object, {"answer": "..."}, of at most 64 KiB`)
		return
	}
	var prompt *state.Prompt
	st := s.backend.Status()
	for i := range st.Prompts {
		if st.Prompts[i].ID == id {
			prompt = &st.Prompts[i]
			break
		}
	}
	if prompt == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no prompt %q is pending (it may have been answered, or have timed out)", id))
		return
	}
	log := s.logFor(r).WithFields(logrus.Fields{"prompt": id, "profile": prompt.Profile, "kind": prompt.Kind})
	if err := s.backend.Answer(id, *req.Answer); err != nil {
		log.WithError(err).Warn("control socket: answer refused")
		writeError(w, http.StatusConflict, fmt.Sprintf("answering prompt %q: %v", id, err))
		return
	}
	log.Info("control socket: prompt answered")
	writeJSON(w, http.StatusOK, Answered{id})
}

// errorBody is every error's answer.
type errorBody struct {
	Error string `json:"error"`
	// Errors are a refused configuration's problems, one each.
	Errors []string `json:"errors,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
