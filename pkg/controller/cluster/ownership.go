package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"golang.org/x/sync/errgroup"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	typedcoordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Ownership decides, through Leases shared with the other replicas of the
// env, which bases this replica serves. It implements the controller's
// Ownership interface; Owns may be called from any goroutine.
type Ownership struct {
	cfg     Config
	metrics *metrics
	leases  typedcoordinationv1.LeaseInterface
	member  string // name of this replica's member Lease

	mu sync.Mutex
	// held are the base Leases this replica holds, by base ID.
	held map[string]*heldLease
	// memberRenewedAt is when the last successful write of this replica's
	// member Lease started: it acts on the bases it holds until
	// memberRenewedAt + RenewDeadline.
	memberRenewedAt time.Time
	// known are the bases reported through Owns, with when they last were.
	known map[string]time.Time
	// changed are the bases whose Owns answer changed since TakeChanged.
	changed map[string]struct{}
	// signal has a value while changed is not empty.
	signal chan struct{}

	// Touched by the Run goroutine only.
	seen       map[string]observation // by Lease name
	link       map[string]linkState   // by replica: connected to the broker or not, since when (observed)
	memberRV   *coordinationv1.Lease  // this replica's member Lease as last written
	lastMember time.Time              // start of its last successful write
	live       []string

	// members are the holders of the member Leases of the last round, live
	// or not; under mu.
	members map[string]bool

	// waiting counts, in a round, the bases chosen for this replica that
	// another still holds.
	waiting atomic.Int64

	ready chan struct{}
}

// roundParallelism is how many base Leases one round writes at once.
const roundParallelism = 8

// heldLease is a base Lease this replica holds. A base Lease is written
// only when it changes hands; it stays valid while its holder's member Lease
// is renewed, so the steady state costs one Lease write per replica per
// RenewInterval, not one per base.
type heldLease struct {
	lease *coordinationv1.Lease // as last written (its resourceVersion is the precondition of the next write)
}

// linkState is whether a replica reaches the broker, and since when.
type linkState struct {
	connected bool
	since     time.Time
}

// observation is when this replica first saw a Lease at its current
// resourceVersion: a Lease unchanged for its duration since is expired.
type observation struct {
	resourceVersion string
	at              time.Time
}

// New returns an Ownership. It validates cfg and fills in defaults; nothing
// is written before Run.
func New(cfg Config) (*Ownership, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid cluster configuration: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Ownership{
		cfg:     cfg,
		metrics: m,
		leases:  cfg.Client.CoordinationV1().Leases(cfg.Namespace),
		member:  LeaseName("module-controller-replica-", cfg.Identity),
		held:    map[string]*heldLease{},
		known:   map[string]time.Time{},
		changed: map[string]struct{}{},
		signal:  make(chan struct{}, 1),
		seen:    map[string]observation{},
		link:    map[string]linkState{},
		ready:   make(chan struct{}),
	}, nil
}

// Identity is this replica's identity, the holder of its Leases.
func (o *Ownership) Identity() string { return o.cfg.Identity }

// Ready is closed after the first round: this replica announced itself and
// read the Leases once.
func (o *Ownership) Ready() <-chan struct{} { return o.ready }

// Owns reports whether this replica may act on the base now: it holds the
// base's Lease and the last renewal of its member Lease started less than
// RenewDeadline ago. It
// also records that the base exists, which makes it a candidate for this
// replica when the hash chooses it.
func (o *Ownership) Owns(baseID string) bool {
	now := o.cfg.Clock.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.known[baseID] = now
	return o.held[baseID] != nil && o.memberFreshLocked(now)
}

// memberFreshLocked reports whether this replica's member Lease was renewed
// recently enough to act on the bases it holds; o.mu is held.
func (o *Ownership) memberFreshLocked(now time.Time) bool {
	return !o.memberRenewedAt.IsZero() && now.Before(o.memberRenewedAt.Add(o.cfg.RenewDeadline))
}

func (o *Ownership) memberFresh(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.memberFreshLocked(now)
}

// Changes is signalled whenever the answer of Owns changed for some base;
// TakeChanged returns which. Several changes may share one signal.
func (o *Ownership) Changes() <-chan struct{} { return o.signal }

// TakeChanged returns the bases whose Owns answer changed since the last
// call, and forgets them.
func (o *Ownership) TakeChanged() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := make([]string, 0, len(o.changed))
	for id := range o.changed {
		ids = append(ids, id)
	}
	clear(o.changed)
	slices.Sort(ids)
	return ids
}

// Owned returns the bases this replica holds the Lease of, sorted.
func (o *Ownership) Owned() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := make([]string, 0, len(o.held))
	for id := range o.held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Live returns the live replicas seen in the last round, sorted.
func (o *Ownership) Live() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.live)
}

// Run takes, renews and releases Leases every RetryPeriod until ctx is
// done, then releases every Lease it holds (and its member Lease) at once.
func (o *Ownership) Run(ctx context.Context) error {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("replica", o.cfg.Identity))
	ticker := o.cfg.Clock.NewTicker(o.cfg.RetryPeriod)
	defer ticker.Stop()
	o.round(ctx)
	close(o.ready)
	for {
		select {
		case <-ctx.Done():
			o.releaseAll(ctx)
			return nil
		case <-ticker.C():
			o.round(ctx)
		}
	}
}

// round is one pass: renew the member Lease, read every Lease of the env,
// then take, renew or release each base's Lease as the hash decides.
func (o *Ownership) round(ctx context.Context) {
	now := o.cfg.Clock.Now()
	o.renewMember(ctx, now)
	list, err := o.leases.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{LabelEnv: labelValue(o.cfg.Env)}).String()})
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot list the Leases; held bases lapse at their renew deadline")
		o.expireLapsed(now)
		return
	}
	present := map[string]bool{}
	bases := map[string]*coordinationv1.Lease{}
	members := map[string]bool{} // holders of member Leases
	var live []string
	for i := range list.Items {
		l := &list.Items[i]
		present[l.Name] = true
		if ob, ok := o.seen[l.Name]; !ok || ob.resourceVersion != l.ResourceVersion {
			o.seen[l.Name] = observation{resourceVersion: l.ResourceVersion, at: now}
		}
		switch l.Labels[LabelLease] {
		case LeaseReplica:
			holder := holderOf(l)
			members[holder] = true
			if holder != "" && holder != o.cfg.Identity && !o.expired(l, now) {
				live = append(live, holder)
				o.observeConnected(holder, l.Annotations[AnnotationConnected] != "false", now)
			}
		case LeaseBase:
			if id := l.Annotations[AnnotationBase]; id != "" {
				bases[id] = l
			}
		}
	}
	for name := range o.seen {
		if !present[name] {
			delete(o.seen, name)
		}
	}
	live = append(live, o.cfg.Identity) // this replica is alive, whatever its member Lease shows
	o.observeConnected(o.cfg.Identity, o.cfg.Connected(), now)
	slices.Sort(live)
	live = slices.Compact(live)
	for id := range o.link {
		if !slices.Contains(live, id) {
			delete(o.link, id)
		}
	}
	// Bases go to the replicas that reach the broker. A replica cut off for
	// longer than a lease duration while others are not hands its bases
	// over; when every replica is cut off (a broker outage) nothing moves,
	// as with one replica.
	serving := live
	if eligible := o.reachable(live, now); len(eligible) > 0 {
		serving = eligible
	}

	// The bases to share: every base with a Lease (which all replicas
	// see alike) and every base this replica heard of lately.
	o.mu.Lock()
	o.live = live
	o.members = members
	candidates := map[string]bool{}
	for id, at := range o.known {
		if now.Sub(at) > o.cfg.ForgetAfter {
			delete(o.known, id)
			continue
		}
		candidates[id] = true
	}
	for id := range o.held {
		candidates[id] = true
	}
	o.mu.Unlock()
	for id := range bases {
		candidates[id] = true
	}
	ids := make([]string, 0, len(candidates))
	for id := range candidates {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	assignment := Assign(ids, serving)
	// Bases are independent: a few at a time, so that a round over hundreds
	// of renewals stays well inside RenewInterval.
	o.waiting.Store(0)
	var g errgroup.Group
	g.SetLimit(roundParallelism)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			o.reconcileBase(ctx, id, bases[id], assignment[id], now)
			return nil
		})
	}
	_ = g.Wait()
	o.mu.Lock()
	o.metrics.owned.Set(float64(len(o.held)))
	o.mu.Unlock()
	o.metrics.replicas.Set(float64(len(live)))
	o.metrics.waiting.Set(float64(o.waiting.Load()))
}

// reconcileBase takes, renews or releases one base's Lease.
func (o *Ownership) reconcileBase(ctx context.Context, baseID string, lease *coordinationv1.Lease, desired string, now time.Time) {
	me := o.cfg.Identity
	o.mu.Lock()
	h := o.held[baseID]
	_, known := o.known[baseID]
	fresh := o.memberFreshLocked(now)
	live := slices.Contains(o.live, holderOfOrEmpty(lease))
	member := o.members[holderOfOrEmpty(lease)]
	o.mu.Unlock()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("base", baseID))

	if h != nil {
		switch {
		case lease == nil || holderOf(lease) != me:
			o.drop(ctx, baseID, CauseTaken)
			return
		case !fresh:
			// The member Lease was not renewed in time (the API failed,
			// or this process was stopped): Owns has said no since the
			// deadline. Start over.
			o.drop(ctx, baseID, CauseRenewFailed)
			h = nil
		case !known:
			o.drop(ctx, baseID, CauseForgotten)
			o.release(ctx, lease, true)
			return
		case desired != me:
			o.drop(ctx, baseID, CauseRebalance)
			o.release(ctx, lease, false)
			return
		default:
			o.mu.Lock()
			if lease.ResourceVersion != h.lease.ResourceVersion {
				h.lease = lease // written under this identity elsewhere; carry on from it
			}
			o.mu.Unlock()
			return
		}
	}
	if desired != me {
		if lease != nil && holderOf(lease) == me {
			o.release(ctx, lease, false) // left by a previous process of this replica
		}
		return
	}
	if !fresh {
		// A Lease taken now would be valid for nobody: the others see
		// this replica's member Lease go stale and take it back.
		return
	}
	switch {
	case lease == nil:
		o.createBase(ctx, baseID, now)
	case holderOf(lease) == "":
		o.takeBase(ctx, baseID, lease, now, CauseReleased)
	case holderOf(lease) == me:
		o.takeBase(ctx, baseID, lease, now, CauseRestart)
	case !live && (member || o.expired(lease, now)):
		// Its holder's member Lease expired; or it has none (gone without
		// a word) and the base Lease has not changed for its duration.
		o.takeBase(ctx, baseID, lease, now, CauseFailover)
	default:
		// Held by a live replica, which releases it once it sees this one.
		o.waiting.Add(1)
		log.G(ctx).WithField("holder", holderOf(lease)).Debug("base chosen for this replica, still held by another")
	}
}

// observeConnected records whether a live replica reports being connected
// to the broker, and since when (by this replica's clock) it does.
func (o *Ownership) observeConnected(id string, connected bool, now time.Time) {
	if st, ok := o.link[id]; !ok || st.connected != connected {
		o.link[id] = linkState{connected: connected, since: now}
	}
}

// reachable returns the live replicas to share the bases among: without the
// ones cut off from the broker for longer than a lease duration, provided
// another has been connected that long. When every replica is cut off (a
// broker outage) or they come back a few seconds apart after one, nil:
// nothing moves, as with one replica.
func (o *Ownership) reachable(live []string, now time.Time) []string {
	var out []string
	stable := false
	for _, id := range live {
		st, ok := o.link[id]
		long := !ok || now.Sub(st.since) >= o.cfg.LeaseDuration
		if !ok || st.connected {
			stable = stable || long
			out = append(out, id)
		} else if !long {
			out = append(out, id)
		}
	}
	if !stable {
		return nil
	}
	return out
}

// renewDue reports whether a Lease written at last is due for renewal in
// the round at now. Rounds come every RetryPeriod, a little late or early:
// a renewal the next round would make later than RenewInterval is made in
// this one, so that a Lease is written once per RenewInterval, not once per
// RenewInterval rounded up to the next round.
func (o *Ownership) renewDue(last, now time.Time) bool {
	return now.Sub(last)+o.cfg.RetryPeriod/2 >= o.cfg.RenewInterval
}

// expired reports whether a Lease has not changed for its duration, by this
// replica's clock since it first saw the Lease's current version.
func (o *Ownership) expired(l *coordinationv1.Lease, now time.Time) bool {
	ob, ok := o.seen[l.Name]
	if !ok {
		return false
	}
	d := o.cfg.LeaseDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return !now.Before(ob.at.Add(d))
}

// createBase creates the Lease of a base that has none, held by this replica.
func (o *Ownership) createBase(ctx context.Context, baseID string, now time.Time) {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:        LeaseName("", protocol.NodeName(o.cfg.Env, baseID)),
			Namespace:   o.cfg.Namespace,
			Labels:      map[string]string{LabelLease: LeaseBase, LabelEnv: labelValue(o.cfg.Env)},
			Annotations: map[string]string{AnnotationBase: baseID},
		},
		Spec: o.spec(now, 0),
	}
	o.metrics.writes.WithLabelValues(LeaseBase, "create").Inc()
	created, err := o.leases.Create(ctx, l, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.IsAlreadyExists(err) {
			log.G(ctx).WithError(err).Warn("cannot create the base's Lease")
		}
		return
	}
	o.gain(ctx, baseID, created, now, CauseNew)
}

// takeBase writes this replica as the holder of a base's Lease; the
// resourceVersion read is the precondition, so of two replicas taking it at
// once one fails.
func (o *Ownership) takeBase(ctx context.Context, baseID string, lease *coordinationv1.Lease, now time.Time, cause string) {
	l := lease.DeepCopy()
	transitions := int32(0)
	if l.Spec.LeaseTransitions != nil {
		transitions = *l.Spec.LeaseTransitions
	}
	if holderOf(lease) != o.cfg.Identity {
		transitions++
	}
	l.Spec = o.spec(now, transitions)
	o.metrics.writes.WithLabelValues(LeaseBase, "update").Inc()
	updated, err := o.leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		if !apierrors.IsConflict(err) {
			log.G(ctx).WithError(err).Warn("cannot take the base's Lease")
		}
		return
	}
	o.gain(ctx, baseID, updated, now, cause)
}

// spec is the Lease spec of a Lease this replica holds from now.
func (o *Ownership) spec(now time.Time, transitions int32) coordinationv1.LeaseSpec {
	t := metav1.NewMicroTime(now)
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr(o.cfg.Identity),
		LeaseDurationSeconds: ptr(int32(o.cfg.LeaseDuration / time.Second)),
		AcquireTime:          &t,
		RenewTime:            &t,
		LeaseTransitions:     ptr(transitions),
	}
}

// gain records a Lease this replica now holds.
func (o *Ownership) gain(ctx context.Context, baseID string, l *coordinationv1.Lease, start time.Time, cause string) {
	o.mu.Lock()
	o.held[baseID] = &heldLease{lease: l}
	o.known[baseID] = start
	o.markChanged(baseID)
	o.mu.Unlock()
	o.metrics.handovers.WithLabelValues("gained", cause).Inc()
	log.G(ctx).WithField("cause", cause).Info("took the base's Lease: serving it")
}

// drop stops holding a base: from now on Owns says no.
func (o *Ownership) drop(ctx context.Context, baseID, cause string) {
	o.mu.Lock()
	_, ok := o.held[baseID]
	delete(o.held, baseID)
	if ok {
		o.markChanged(baseID)
	}
	o.mu.Unlock()
	if ok {
		o.metrics.handovers.WithLabelValues("lost", cause).Inc()
		log.G(ctx).WithField("cause", cause).Info("no longer holding the base's Lease: stopped serving it")
	}
}

// expireLapsed drops the held Leases once the member Lease is past its
// renew deadline, when the Leases could not be read.
func (o *Ownership) expireLapsed(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.memberFreshLocked(now) {
		return
	}
	for id := range o.held {
		delete(o.held, id)
		o.markChanged(id)
		o.metrics.handovers.WithLabelValues("lost", CauseRenewFailed).Inc()
	}
	o.metrics.owned.Set(float64(len(o.held)))
}

// markChanged records a change of Owns for baseID; o.mu is held.
func (o *Ownership) markChanged(baseID string) {
	o.changed[baseID] = struct{}{}
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// release gives up a Lease: deleted when the base is forgotten, else an
// empty holder that the next owner takes at once. The caller stopped acting
// on the base before. A failure is left to expiry.
func (o *Ownership) release(ctx context.Context, lease *coordinationv1.Lease, remove bool) {
	if remove {
		o.metrics.writes.WithLabelValues(LeaseBase, "delete").Inc()
		err := o.leases.Delete(ctx, lease.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &lease.ResourceVersion}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			log.G(ctx).WithError(err).Debug("cannot delete the Lease; it expires")
		}
		return
	}
	l := lease.DeepCopy()
	l.Spec.HolderIdentity = nil
	l.Spec.AcquireTime = nil
	l.Spec.RenewTime = nil
	o.metrics.writes.WithLabelValues(kindOf(lease), "update").Inc()
	if _, err := o.leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.G(ctx).WithError(err).Debug("cannot release the Lease; it expires")
	}
}

// renewMember creates or renews this replica's member Lease.
func (o *Ownership) renewMember(ctx context.Context, now time.Time) {
	connected := strconv.FormatBool(o.cfg.Connected())
	if o.memberRV != nil && !o.renewDue(o.lastMember, now) && o.memberRV.Annotations[AnnotationConnected] == connected {
		return
	}
	var (
		l   *coordinationv1.Lease
		err error
	)
	if o.memberRV == nil {
		l, err = o.leases.Get(ctx, o.member, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			o.metrics.writes.WithLabelValues(LeaseReplica, "create").Inc()
			l, err = o.leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{
					Name:        o.member,
					Namespace:   o.cfg.Namespace,
					Labels:      map[string]string{LabelLease: LeaseReplica, LabelEnv: labelValue(o.cfg.Env)},
					Annotations: map[string]string{AnnotationConnected: connected},
				},
				Spec: o.spec(now, 0),
			}, metav1.CreateOptions{})
			if err == nil {
				o.memberRV, o.lastMember = l, now
				o.setMemberRenewed(now)
				return
			}
		}
		if err != nil {
			o.metrics.renewFailures.WithLabelValues(LeaseReplica).Inc()
			log.G(ctx).WithError(err).Warn("cannot announce this replica")
			return
		}
	} else {
		l = o.memberRV.DeepCopy()
	}
	l.Spec = o.spec(now, 0)
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[AnnotationConnected] = connected
	o.metrics.writes.WithLabelValues(LeaseReplica, "update").Inc()
	updated, err := o.leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		o.metrics.renewFailures.WithLabelValues(LeaseReplica).Inc()
		log.G(ctx).WithError(err).Warn("cannot renew this replica's Lease")
		o.memberRV = nil // read it again next round
		return
	}
	o.memberRV, o.lastMember = updated, now
	o.setMemberRenewed(now)
}

// setMemberRenewed records a successful member renewal that started at now.
// A renewal after the member Lease lapsed (this replica was stopped or cut
// off from the API server past its renew deadline) first drops every base
// held: another replica may have taken them meanwhile, and Owns must not say
// yes again before the round has read their Leases; the round takes back
// those still held under this identity.
func (o *Ownership) setMemberRenewed(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.memberFreshLocked(now) {
		for id := range o.held {
			delete(o.held, id)
			o.markChanged(id)
			o.metrics.handovers.WithLabelValues("lost", CauseRenewFailed).Inc()
		}
		o.metrics.owned.Set(float64(len(o.held)))
	}
	o.memberRenewedAt = now
}

// releaseAll stops acting on every base at once, then releases their
// Leases and deletes the member Lease, so that the other replicas take over
// without waiting for expiry.
func (o *Ownership) releaseAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultReleaseTimeout)
	defer cancel()
	o.mu.Lock()
	leases := make([]*coordinationv1.Lease, 0, len(o.held))
	for id, h := range o.held {
		leases = append(leases, h.lease)
		delete(o.held, id)
		o.markChanged(id)
		o.metrics.handovers.WithLabelValues("lost", CauseShutdown).Inc()
	}
	o.metrics.owned.Set(0)
	o.mu.Unlock()
	var g errgroup.Group
	g.SetLimit(16)
	for _, l := range leases {
		g.Go(func() error {
			o.release(ctx, l, false)
			return nil
		})
	}
	if o.memberRV != nil {
		o.metrics.writes.WithLabelValues(LeaseReplica, "delete").Inc()
		err := o.leases.Delete(ctx, o.member, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &o.memberRV.ResourceVersion}})
		if err != nil && !apierrors.IsNotFound(err) {
			log.G(ctx).WithError(err).Debug("cannot delete this replica's Lease; it expires")
		}
	}
	_ = g.Wait()
	log.G(ctx).WithField("released", len(leases)).Info("released every base Lease")
}

// holderOfOrEmpty returns the holder of a Lease that may be nil.
func holderOfOrEmpty(l *coordinationv1.Lease) string {
	if l == nil {
		return ""
	}
	return holderOf(l)
}

// holderOf returns a Lease's holder, "" for none.
func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// kindOf returns a Lease's kind label.
func kindOf(l *coordinationv1.Lease) string {
	if l.Labels[LabelLease] == LeaseReplica {
		return LeaseReplica
	}
	return LeaseBase
}

func ptr[T any](v T) *T { return &v }
