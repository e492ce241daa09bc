package basesim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// DefaultFleetConcurrency is how many bases a Fleet connects at once.
const DefaultFleetConcurrency = 32

// FleetConfig configures a Fleet.
type FleetConfig struct {
	// Base is the template of every base; its Identity is ignored and, unless set in the
	// template, LocalIP and LocalHostName are derived per base as Config documents.
	Base Config
	// Count is the number of bases.
	Count int
	// IdentityPrefix names the bases "<prefix>-<i>", i from 0; it must make valid DNS
	// labels (lower case). Defaults to "base". Ignored if Identity is set.
	IdentityPrefix string
	// Identity, if set, returns the identity of base i, e.g. IPIdentities.
	Identity func(i int) string
	// Concurrency bounds how many bases connect at once. Defaults to
	// DefaultFleetConcurrency.
	Concurrency int
}

// IPIdentities returns an identity function giving base i the address first+i, the way
// real bases are identified by their IP (e.g. 10.0.0.1, 10.0.0.2, …).
func IPIdentities(first netip.Addr) func(int) string {
	return func(i int) string {
		if first.Is4() {
			v := first.As4()
			n := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
			n += uint32(i)
			return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
		}
		a := first
		for range i {
			a = a.Next()
		}
		return a.String()
	}
}

// Fleet is a set of simulated bases in one process.
type Fleet struct {
	bases []*Base
	once  sync.Once
}

// StartFleet creates and starts cfg.Count bases, at most cfg.Concurrency at a time, and
// returns when all of them have started (see Base.Start). On error it stops the bases it
// started and returns the first error. Stop the fleet with Stop.
func StartFleet(ctx context.Context, cfg FleetConfig) (*Fleet, error) {
	if cfg.Count < 0 {
		return nil, fmt.Errorf("fleet count %d is negative", cfg.Count)
	}
	identity := cfg.Identity
	if identity == nil {
		prefix := cfg.IdentityPrefix
		if prefix == "" {
			prefix = "base"
		}
		identity = func(i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
	}
	f := &Fleet{bases: make([]*Base, cfg.Count)}
	var errs []error
	seen := make(map[string]bool, cfg.Count)
	for i := range f.bases {
		c := cfg.Base
		c.Identity = identity(i)
		if seen[c.Identity] {
			errs = append(errs, fmt.Errorf("base %d: duplicate identity %q", i, c.Identity))
			continue
		}
		seen[c.Identity] = true
		b, err := New(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("base %d: %w", i, err))
			continue
		}
		f.bases[i] = b
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	limit := cfg.Concurrency
	if limit <= 0 {
		limit = DefaultFleetConcurrency
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, b := range f.bases {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := b.Start(ctx); err != nil {
				cancel(fmt.Errorf("start base %s: %w", b.Identity(), err))
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		f.Stop()
		return nil, context.Cause(ctx)
	}
	return f, nil
}

// Bases returns the bases in index order. The caller must not modify the slice.
func (f *Fleet) Bases() []*Base { return f.bases }

// Base returns base i.
func (f *Fleet) Base(i int) *Base { return f.bases[i] }

// Len returns the number of bases.
func (f *Fleet) Len() int { return len(f.bases) }

// Stop stops every base, concurrently. It is idempotent.
func (f *Fleet) Stop() {
	f.once.Do(func() {
		var wg sync.WaitGroup
		for _, b := range f.bases {
			wg.Go(b.Stop)
		}
		wg.Wait()
	})
}
