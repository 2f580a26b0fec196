package platformtest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/platform"
)

var _ platform.Owners = (*Owners)(nil)

// Owners is a platform.Owners that answers from a table of flows
// (src, dst) → owner, set by the test, and records every lookup. A flow
// not in the table has the owner SetAny gave, or else no socket (an error
// wrapping platform.ErrNoSocket). Its zero value is ready to use; it is
// safe for concurrent use.
type Owners struct {
	// OpenErr, when set, makes Open fail.
	OpenErr error

	mu     sync.Mutex
	table  map[ownerKey]ownerEntry
	any    *platform.Owner
	allErr error
	calls  []OwnerCall
	opens  int
	closes int
	closed bool
}

type ownerKey struct{ src, dst netip.AddrPort }

type ownerEntry struct {
	owner platform.Owner
	err   error
}

// OwnerCall is one lookup.
type OwnerCall struct {
	// UIDOnly: LookupUID; else Lookup.
	UIDOnly  bool
	Src, Dst netip.AddrPort
}

func (c OwnerCall) String() string {
	m := "Lookup"
	if c.UIDOnly {
		m = "LookupUID"
	}
	return fmt.Sprintf("%s %v -> %v", m, c.Src, c.Dst)
}

// Set makes owner the owner of the flow src -> dst (as given to Lookup:
// the table does not unmap addresses).
func (o *Owners) Set(src, dst netip.AddrPort, owner platform.Owner) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.entries()[ownerKey{src, dst}] = ownerEntry{owner: owner}
}

// Fail makes the lookups of the flow src -> dst fail with err.
func (o *Owners) Fail(src, dst netip.AddrPort, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.entries()[ownerKey{src, dst}] = ownerEntry{err: err}
}

// SetAny makes owner the owner of every flow not in the table; nil: they
// have no socket.
func (o *Owners) SetAny(owner *platform.Owner) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if owner != nil {
		c := *owner
		owner = &c
	}
	o.any = owner
}

// FailAll makes every lookup fail with err, the table's flows too; nil
// ends that.
func (o *Owners) FailAll(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.allErr = err
}

func (o *Owners) entries() map[ownerKey]ownerEntry {
	if o.table == nil {
		o.table = make(map[ownerKey]ownerEntry)
	}
	return o.table
}

// Open opens the lookup, for engine.Deps.Owners: it fails with OpenErr if
// set, and otherwise returns o, open again if it was closed.
func (o *Owners) Open(logrus.FieldLogger) (platform.Owners, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.OpenErr != nil {
		return nil, o.OpenErr
	}
	o.opens++
	o.closed = false
	return o, nil
}

// Lookup implements platform.Owners.
func (o *Owners) Lookup(ctx context.Context, src, dst netip.AddrPort) (platform.Owner, error) {
	return o.lookup(ctx, OwnerCall{Src: src, Dst: dst})
}

// LookupUID implements platform.Owners: the owner's UID, or
// platform.ErrNoUID for an owner with NoUID.
func (o *Owners) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	ow, err := o.lookup(ctx, OwnerCall{UIDOnly: true, Src: src, Dst: dst})
	if err == nil && ow.NoUID {
		err = fmt.Errorf("platformtest: owner of %v -> %v: %w", src, dst, platform.ErrNoUID)
	}
	return ow.UID, err
}

func (o *Owners) lookup(ctx context.Context, c OwnerCall) (platform.Owner, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, c)
	switch {
	case o.closed:
		return platform.Owner{}, errors.New("platformtest: lookup after Close")
	case ctx.Err() != nil:
		return platform.Owner{}, fmt.Errorf("platformtest: owner of %v -> %v: %w", c.Src, c.Dst, ctx.Err())
	case o.allErr != nil:
		return platform.Owner{}, o.allErr
	}
	if e, ok := o.table[ownerKey{c.Src, c.Dst}]; ok {
		return e.owner, e.err
	}
	if o.any != nil {
		return *o.any, nil
	}
	return platform.Owner{}, fmt.Errorf("platformtest: %w for %v -> %v", platform.ErrNoSocket, c.Src, c.Dst)
}

// Close implements platform.Owners; lookups fail until the next Open.
func (o *Owners) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closes++
	o.closed = true
	return nil
}

// Calls are the lookups so far, in order.
func (o *Owners) Calls() []OwnerCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.calls)
}

// Opens counts the successful Opens.
func (o *Owners) Opens() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opens
}

// Closes counts the calls of Close.
func (o *Owners) Closes() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closes
}
