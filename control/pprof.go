package control

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
)

// pprofRoutes serves Go's runtime profiles under /debug/pprof/ (Options.
// Pprof). They show the memory of the process, secrets included, so only
// root and the daemon's own user get them: not control.group's members,
// who may use the rest of the API.
func (s *Server) pprofRoutes(mux *http.ServeMux) {
	only := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ca, _ := r.Context().Value(accessKey{}).(*connAccess)
			if err := s.access.allowProfiles(ca); err != nil {
				s.logFor(r).WithField("path", r.URL.Path).Warnf("control socket: refused: %v", err)
				writeError(w, http.StatusForbidden, err.Error())
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("/debug/pprof/", only(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", only(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", only(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", only(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", only(pprof.Trace))
}

// allowProfiles tells whether the peer of ca may read the profiles: root
// and the daemon's own user only.
func (a access) allowProfiles(ca *connAccess) error {
	if ca == nil || ca.err != nil {
		return errors.New("the peer's credentials are unknown")
	}
	if ca.peer.UID == 0 || ca.peer.UID == a.self {
		return nil
	}
	who := "root"
	if a.self != 0 {
		who += fmt.Sprintf(" and shunt's own user (uid %d)", a.self)
	}
	return fmt.Errorf("%s may not read the profiles (/debug/pprof/): they show shunt's memory; only %s may", ca.peer, who)
}
