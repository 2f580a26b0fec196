package dns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// maxStateSize bounds the state file read: maxNames names take about 6 MB.
const maxStateSize = 32 << 20

// stateFile is the fake-IP table on disk.
type stateFile struct {
	Version int          `json:"version"`
	Names   []stateEntry `json:"names"`
}

type stateEntry struct {
	Name    string       `json:"name"`
	Addrs   []netip.Addr `json:"addrs"`
	LastUse time.Time    `json:"last_use"`
}

// parseState reads a state file. It fails only when the file as a whole
// is not one; entries are checked as they are loaded.
func parseState(b []byte) (*stateFile, error) {
	var st stateFile
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&st); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("data after the JSON object")
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("version %d, want %d", st.Version, stateVersion)
	}
	return &st, nil
}

// load fills the table from the state file. A missing file is a first
// start; one that is not a state file is renamed aside, so it is kept for
// a look, and logged; entries outside the fake ranges, or otherwise
// unusable, are dropped.
func (s *Server) load() {
	path := s.opts.StateFile
	log := s.log.WithField("file", path)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		log.WithError(err).Warn("cannot read the fake-IP table; starting with an empty one")
		return
	}
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	f.Close()
	if err == nil && len(b) > maxStateSize {
		err = fmt.Errorf("larger than %d bytes", maxStateSize)
	}
	if err != nil {
		log.WithError(err).Warn("cannot read the fake-IP table; starting with an empty one")
		return
	}
	st, err := parseState(b)
	if err != nil {
		aside := fmt.Sprintf("%s.invalid-%s", path, s.now().UTC().Format("20060102T150405Z"))
		for i := 1; ; i++ {
			if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) || i == 100 {
				break
			}
			aside = fmt.Sprintf("%s.invalid-%s-%d", path, s.now().UTC().Format("20060102T150405Z"), i)
		}
		if rerr := os.Rename(path, aside); rerr != nil {
			log.WithError(err).WithField("rename_error", rerr).Warn("the fake-IP table is not valid and cannot be moved aside; starting with an empty one (it will be overwritten)")
			return
		}
		log.WithError(err).WithField("moved_to", aside).Warn("the fake-IP table is not valid: moved it aside, starting with an empty one")
		return
	}
	loaded, dropped := s.loadEntries(st.Names)
	log.WithField("names", loaded).WithField("dropped", dropped).Info("loaded the fake-IP table")
	if dropped > 0 {
		s.changed() // rewrite the file without them
	}
}

// loadEntries puts the entries into the table, most recently used first
// (of two that claim a name or an address, the more recent wins), and
// returns how many it took and dropped.
func (s *Server) loadEntries(entries []stateEntry) (loaded, dropped int) {
	// The file lists the least recently used first; on equal times its
	// order holds.
	slices.Reverse(entries)
	slices.SortStableFunc(entries, func(a, b stateEntry) int { return b.LastUse.Compare(a.LastUse) })
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		name, err := policyName(e.Name, false)
		var addrs []netip.Addr
		for _, a := range e.Addrs {
			if a.IsValid() && s.tab.pools[family(a.Unmap())].valid(a.Unmap()) {
				addrs = append(addrs, a.Unmap())
			} else {
				dropped++
			}
		}
		// A last use in the future (the clock went back) is now.
		last := min(e.LastUse.Sub(s.epoch), 0)
		if err != nil || len(addrs) == 0 || !s.tab.add(name, addrs, int64(last)) {
			dropped++
			continue
		}
		loaded++
	}
	return loaded, dropped
}

// changed notes that the table changed: it is saved within saveDelay.
func (s *Server) changed() {
	if s.opts.StateFile == "" {
		return
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	s.dirty = true
	if s.saveTimer == nil && !s.closed {
		s.saving.Add(1)
		s.saveTimer = time.AfterFunc(s.saveDelay, s.saveLater)
	}
}

// saveLater is the timer's save.
func (s *Server) saveLater() {
	defer s.saving.Done()
	s.smu.Lock()
	s.saveTimer = nil
	closed := s.closed
	s.smu.Unlock()
	if closed {
		return // Close saves
	}
	if err := s.save(); err != nil {
		s.log.WithError(err).WithField("file", s.opts.StateFile).Warn("cannot save the fake-IP table")
	}
}

// save writes the table to the state file: a temporary file in the same
// directory, mode 0600, renamed over the old one.
func (s *Server) save() error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.smu.Lock()
	s.dirty = false
	s.smu.Unlock()
	st := stateFile{Version: stateVersion}
	// Least recently used first, the order load puts them back in.
	s.mu.RLock()
	for e := s.tab.tail; e != nil; e = e.prev {
		st.Names = append(st.Names, stateEntry{
			Name:    e.name,
			Addrs:   e.addrs(),
			LastUse: s.epoch.Add(time.Duration(e.used)).UTC().Round(time.Millisecond),
		})
	}
	s.mu.RUnlock()
	if st.Names == nil {
		st.Names = []stateEntry{}
	}
	b, err := json.MarshalIndent(&st, "", "\t")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.opts.StateFile, append(b, '\n')); err != nil {
		s.smu.Lock()
		s.dirty = true
		s.smu.Unlock()
		return fmt.Errorf("save the fake-IP table: %w", err)
	}
	return nil
}

// writeAtomic replaces path with b: readers see the old file or the new
// one, never a part.
func writeAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// Make the rename durable; not every system can sync a directory.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadTable reads the fake-IP table a running (or stopped) shunt keeps in
// path, without changing it: the addresses each name holds. shunt explain
// uses it to name the fake address an application gets. A missing file is
// an empty table.
func ReadTable(path string) (map[string][]netip.Addr, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]netip.Addr{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxStateSize)
	}
	st, err := parseState(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make(map[string][]netip.Addr, len(st.Names))
	for _, e := range st.Names {
		out[canon(e.Name)] = slices.Clone(e.Addrs)
	}
	return out, nil
}
