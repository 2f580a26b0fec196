package broker

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// profileSet is the profiles in force and their pools. It is never
// changed once stored: SetProfiles stores a new one.
type profileSet struct {
	pools map[string]*pool
	order []*pool // in the order the profiles were given
}

// checkedProfiles are profiles with their defaults, by name and in order.
type checkedProfiles struct {
	byName map[string]*Profile
	order  []*Profile
}

// checkProfiles applies the defaults to copies of profiles and checks
// them: names unique, jumps naming profiles, without loops.
func checkProfiles(profiles []Profile) (checkedProfiles, error) {
	c := checkedProfiles{byName: map[string]*Profile{}}
	for i := range profiles {
		p := profiles[i]
		p.applyDefaults()
		if _, dup := c.byName[p.Name]; dup {
			return c, fmt.Errorf("profile %q is defined twice", p.Name)
		}
		c.byName[p.Name] = &p
		c.order = append(c.order, &p)
	}
	for _, p := range c.order {
		seen := map[string]bool{p.Name: true}
		chain := []string{p.Name}
		for j := p.Jump; j != ""; j = c.byName[j].Jump {
			if _, ok := c.byName[j]; !ok {
				return c, fmt.Errorf("profile %q jumps through unknown profile %q", chain[len(chain)-1], j)
			}
			chain = append(chain, j)
			if seen[j] {
				return c, fmt.Errorf("profiles jump in a loop: %s", strings.Join(chain, " → "))
			}
			seen[j] = true
		}
	}
	return c, nil
}

// SetProfiles puts profiles in force, as a whole or not at all: profiles
// that do not check (a name twice, an unknown or looping jump) are refused
// and nothing changes.
//
//   - A new profile can be dialled at once (and connects now if it asks
//     to connect at start and the broker has started).
//   - An unchanged profile keeps its pool: its connections, flows and
//     counters.
//   - A changed profile (any setting, or a profile it jumps through,
//     changed) gets a new pool for new flows; so do its
//     host-from-application servers.
//   - A removed profile takes no new flows.
//
// The replaced and removed pools are retired: flows running on them go on
// until they end, each connection closing once its last channel has ended
// (idle_timeout does not keep it), and the pool leaves Status (where it
// shows as Retired) once its connections are gone. With resetRemoved, the
// retired pools' connections are closed at once instead, which resets
// their flows (their reads fail with ErrConnectionLost).
func (b *Broker) SetProfiles(profiles []Profile, resetRemoved bool) error {
	c, err := checkProfiles(profiles)
	if err != nil {
		return err
	}
	b.viaMu.Lock()
	if b.viaClosed {
		b.viaMu.Unlock()
		return errors.New("broker closed")
	}
	old := b.set.Load()
	was := map[string]*Profile{}
	for name, pl := range old.pools {
		was[name] = pl.p
	}
	changed := changedProfiles(was, c.byName)
	set := &profileSet{pools: map[string]*pool{}}
	var added []*pool
	for _, p := range c.order {
		pl := old.pools[p.Name]
		if pl == nil || changed[p.Name] {
			pl = newPool(b, p, p.Name, "")
			added = append(added, pl)
		}
		set.pools[p.Name] = pl
		set.order = append(set.order, pl)
	}
	var retire []*pool
	for _, pl := range old.order {
		if set.pools[pl.name] != pl {
			retire = append(retire, pl)
		}
	}
	for key, pl := range b.via {
		if _, kept := c.byName[pl.name]; !kept || changed[pl.name] {
			delete(b.via, key)
			retire = append(retire, pl)
		}
	}
	b.set.Store(set)
	startCtx := b.startCtx
	b.viaMu.Unlock()

	for _, pl := range added {
		how := "added"
		if old.pools[pl.name] != nil {
			how = "changed: new flows get new connections"
		}
		pl.log.Info("profile " + how)
		if startCtx != nil {
			pl.connectOnStart(startCtx)
		}
	}
	if len(retire) == 0 {
		return nil
	}
	b.retiredMu.Lock()
	b.retired = append(b.retired, retire...)
	b.retiredMu.Unlock()
	for _, pl := range retire {
		pl.retire(resetRemoved)
	}
	return nil
}

// changedProfiles names the profiles of is whose settings differ from
// those in was, or that jump through a profile that changed or went.
func changedProfiles(was, is map[string]*Profile) map[string]bool {
	changed := map[string]bool{}
	var check func(name string) bool
	check = func(name string) bool {
		if c, ok := changed[name]; ok {
			return c
		}
		p, o := is[name], was[name]
		c := o == nil || !reflect.DeepEqual(*o, *p)
		if !c && p.Jump != "" {
			c = check(p.Jump) // checkProfiles refused loops
		}
		changed[name] = c
		return c
	}
	for name := range is {
		check(name)
	}
	return changed
}

// retire stops the pool taking new flows and lets its connections close
// as their last channels end; reset closes them now, resetting their
// flows.
func (pl *pool) retire(reset bool) {
	pl.mu.Lock()
	pl.retired.Store(true)
	pl.mu.Unlock()
	flows := 0
	for _, l := range pl.links {
		l.mu.Lock()
		flows += l.flows
		if !reset {
			l.armIdle() // closes a connection without flows at once
		}
		l.mu.Unlock()
	}
	log := pl.log.WithField("flows", flows)
	if pl.via != "" {
		log = log.WithField("server", pl.via)
	}
	switch {
	case reset:
		log.Info("profile replaced or removed: resetting the flows of its old connections")
		pl.close()
	case flows > 0:
		log.Info("profile replaced or removed: its old connections close as their last flow ends")
	}
	pl.unusedCheck(false)
}

// dropRetired forgets a retired pool once nothing uses it.
func (b *Broker) dropRetired(pl *pool) {
	if !pl.unused() {
		return
	}
	b.retiredMu.Lock()
	i := slices.Index(b.retired, pl)
	if i >= 0 {
		b.retired = slices.Delete(b.retired, i, i+1)
	}
	b.retiredMu.Unlock()
	if i < 0 {
		return
	}
	pl.close() // nothing to wait for: it has no connection
	pl.log.Debug("the retired profile's last connection has closed")
}

// retiredPools lists the retired pools still draining.
func (b *Broker) retiredPools() []*pool {
	b.retiredMu.Lock()
	defer b.retiredMu.Unlock()
	return slices.Clone(b.retired)
}
