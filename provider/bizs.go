package provider

import (
	"context"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// attempt tracks one install or uninstall of a name:version until the base
// answers it.
type attempt struct {
	biz      protocol.BizModel
	sentAt   time.Time
	tries    int
	retryAt  time.Time // zero while the command waits for its answer
	failure  string    // what went wrong last, shown on the pod
	baseline bool      // sent as part of a baseline
	// maybeInstalled is set on an install once sent, until the base answers
	// that it did not install: an unanswered or conflicting install may yet
	// leave the biz on the base.
	maybeInstalled bool
}

// due reports whether the attempt should be sent (again) now.
func (a *attempt) due(now time.Time, timeout time.Duration) bool {
	if a.retryAt.IsZero() {
		return now.Sub(a.sentAt) >= timeout
	}
	return !now.Before(a.retryAt)
}

// failed records a failure and schedules the next try with backoff.
func (p *Provider) failed(a *attempt, failure string, now time.Time) {
	a.failure = failure
	a.retryAt = now.Add(p.backoff(a.tries))
}

// backoff doubles from RetryBase for each try, up to RetryMax.
func (p *Provider) backoff(tries int) time.Duration {
	d := p.cfg.RetryBase
	for i := 1; i < tries && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, p.cfg.RetryMax)
}

// Run sends the commands reconciles produce until ctx is done.
func (p *Provider) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.cmds.queued:
			for _, c := range p.cmds.take() {
				go p.execute(ctx, c)
			}
		}
	}
}

// execute sends one command; a command that could not be sent is retried
// with backoff.
func (p *Provider) execute(ctx context.Context, c command) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CommandTimeout)
	defer cancel()
	var err error
	switch c.kind {
	case cmdInstall:
		err = p.cfg.Tunnel.InstallBiz(ctx, p.BaseID(), c.biz)
	case cmdUninstall:
		err = p.cfg.Tunnel.UninstallBiz(ctx, p.BaseID(), c.biz)
	case cmdQueryAll:
		err = p.cfg.Tunnel.QueryAllBiz(ctx, p.BaseID())
	case cmdReleasePod:
		if p.cfg.ReleasePod != nil {
			err = p.cfg.ReleasePod(ctx, c.release)
		}
	}
	if err == nil {
		return
	}
	log.G(ctx).WithField("base", p.BaseID()).WithField("command", c.kind.String()).WithField("biz", c.biz.Key()).WithError(err).Warn("command failed; will retry")
	p.mu.Lock()
	now := p.clock.Now()
	switch c.kind {
	case cmdInstall:
		if a := p.installs[c.biz.Key()]; a != nil {
			p.failed(a, "cannot reach the base: "+err.Error(), now)
		}
	case cmdUninstall:
		if a := p.uninstalls[c.biz.Key()]; a != nil {
			p.failed(a, "cannot reach the base: "+err.Error(), now)
		}
	case cmdQueryAll:
		p.needQuery = true
	case cmdReleasePod:
		// The entry left p.pods when the release was decided: put it back
		// (unless a new pod took its name) so the next reconcile retries.
		if e := c.entry; e != nil && p.pods[e.key] == nil {
			e.released = false
			p.pods[e.key] = e
		}
	}
	p.mu.Unlock()
	p.markPodsChanged()
}

// sync reconciles the base with the pods, sends what that calls for and
// refreshes pod statuses. Nothing is decided while the base is offline.
func (p *Provider) sync() {
	p.mu.Lock()
	var cmds []command
	if p.online() {
		cmds = p.reconcile(p.clock.Now())
	}
	p.mu.Unlock()
	p.cmds.enqueue(cmds)
	p.markPodsChanged()
}

// Resync re-runs the reconcile: the controller calls it periodically so that
// unanswered commands time out and backoffs expire.
func (p *Provider) Resync() { p.sync() }

// markPodsChanged wakes the pod status notifier.
func (p *Provider) markPodsChanged() {
	select {
	case p.podsChanged <- struct{}{}:
	default:
	}
}

// OnBizStatus records the base's full biz list, published at publishedAt.
func (p *Provider) OnBizStatus(bizs []protocol.SimpleBizInfo, publishedAt time.Time) {
	p.mu.Lock()
	p.inventory = true
	listed := map[string]bool{}
	for _, b := range bizs {
		key := b.Key()
		listed[key] = true
		changed := b.ChangedAt()
		if changed.IsZero() {
			changed = publishedAt
		}
		rec := &bizRecord{state: b.BizState(), changed: changed, seen: publishedAt}
		if r := b.LatestStateRecord; r != nil {
			rec.reason, rec.message = r.Reason, r.Message
		}
		p.setRecord(key, rec)
	}
	for key, r := range p.bizs {
		if !listed[key] && r.seen.Before(publishedAt) {
			p.dropRecord(key)
		}
	}
	p.mu.Unlock()
	p.sync()
}

// OnBizOperation records the base's answer to one install or uninstall.
func (p *Provider) OnBizOperation(op protocol.BizOperation, publishedAt time.Time) {
	p.mu.Lock()
	now := p.clock.Now()
	key := op.Key()
	if !p.solicited(op.Command, key) {
		p.mu.Unlock()
		log.L.WithField("base", p.BaseID()).WithField("command", op.Command).WithField("biz", key).
			Debug("dropped a biz operation result: no such command is outstanding")
		if p.cfg.UnsolicitedResults != nil {
			p.cfg.UnsolicitedResults.Inc()
		}
		return
	}
	switch op.Command {
	case protocol.CommandInstallBiz:
		a := p.installs[key]
		switch op.Outcome() {
		case protocol.OutcomeSucceeded:
			p.setRecord(key, installedRecord(op.Response.Data.BizInfos, publishedAt))
			delete(p.installs, key)
			if p.otherVersions(op.BizName, op.BizVersion) {
				// Installing a version next to another one switches which is
				// active; only the biz list tells what became of the other.
				p.needQuery = true
			}
		case protocol.OutcomeRepeat:
			// Already there: learn its state from the biz list.
			p.needQuery = true
			if a != nil {
				a.retryAt = now.Add(p.cfg.InstallTimeout)
			}
		case protocol.OutcomeConflict:
			if a != nil {
				a.retryAt = now.Add(p.cfg.RetryBase)
			}
		default:
			if a != nil {
				a.maybeInstalled = false
				p.failed(a, failureText(op.ErrorMessage(), op.Response.Data.Message), now)
			}
		}
	case protocol.CommandUninstallBiz:
		a := p.uninstalls[key]
		switch op.Outcome() {
		case protocol.OutcomeSucceeded, protocol.OutcomeNotFound:
			p.dropRecord(key)
			delete(p.uninstalls, key)
			for _, e := range p.pods {
				if e.deleting && e.gone != nil {
					if _, ok := e.gone[key]; !ok && e.wants(key) {
						e.gone[key] = now
					}
				}
			}
		case protocol.OutcomeConflict:
			if a != nil {
				a.retryAt = now.Add(p.cfg.RetryBase)
			}
		default:
			if a != nil {
				p.failed(a, "uninstall failed: "+op.ErrorMessage(), now)
			}
		}
	}
	p.mu.Unlock()
	p.sync()
}

// solicited reports whether a result of command for key answers something
// this controller asked: an install or uninstall it sent and that is still
// outstanding. An install result is also taken for a biz the base is known to
// have, whose state it refreshes. Anything else (a reply to a command of an
// earlier process, a replay, a spoof) is dropped: applied, it could turn a pod
// Running that nothing installed, or forget a biz that is still there and
// reinstall it.
func (p *Provider) solicited(command, key string) bool {
	switch command {
	case protocol.CommandInstallBiz:
		if a := p.installs[key]; a != nil && a.tries > 0 {
			return true
		}
		return p.bizs[key] != nil
	case protocol.CommandUninstallBiz:
		a := p.uninstalls[key]
		return a != nil && a.tries > 0
	}
	return false
}

// Baseline returns the bizs the base must run: those of the live pods bound
// to its node. A base asks for it when its process starts, so everything it
// had before is forgotten, and the baseline counts as an install of each biz.
func (p *Provider) Baseline() []protocol.BizModel {
	p.mu.Lock()
	now := p.clock.Now()
	// The new process has none of the old one's bizs, and nothing sent to
	// the old one will be answered: drop those commands, so that deleted
	// pods go at once instead of after a timeout and a futile uninstall.
	p.bizs = map[string]*bizRecord{}
	p.installs = map[string]*attempt{}
	p.uninstalls = map[string]*attempt{}
	p.inventory = true
	p.baselineURLs = map[string]string{}
	owners := p.owners()
	var out []protocol.BizModel
	for _, e := range p.pods {
		for _, s := range e.specs {
			if s.invalid != "" || owners[s.key()] != e.key {
				continue
			}
			out = append(out, s.biz)
			p.baselineURLs[s.biz.BizURL] = s.key()
			p.installedURL[s.key()] = s.biz.BizURL
			p.installs[s.key()] = &attempt{biz: s.biz, sentAt: now, tries: 1, baseline: true, maybeInstalled: true}
		}
	}
	p.mu.Unlock()
	// Release deleted pods, and show that every biz is being installed again.
	p.sync()
	return out
}

// OnBatchInstall records the base's answer to a baseline. When the whole
// batch failed (a real base downloads every jar first, so one unreachable jar
// fails them all), each biz is installed on its own instead.
func (p *Provider) OnBatchInstall(res protocol.BatchInstallResult, publishedAt time.Time) {
	p.mu.Lock()
	now := p.clock.Now()
	entries := res.Response.Data.BizURLToResponse
	for url, r := range entries {
		key, ok := p.baselineURLs[url]
		if !ok {
			continue
		}
		a := p.installs[key]
		if (a == nil || !a.baseline) && p.bizs[key] == nil {
			// Not part of an outstanding baseline: see solicited.
			if p.cfg.UnsolicitedResults != nil {
				p.cfg.UnsolicitedResults.Inc()
			}
			continue
		}
		switch r.Outcome() {
		case protocol.OutcomeSucceeded:
			p.setRecord(key, installedRecord(r.BizInfos, publishedAt))
			delete(p.installs, key)
		case protocol.OutcomeRepeat:
			p.needQuery = true
		default:
			if a != nil {
				a.maybeInstalled = false
				p.failed(a, r.Message, now)
			}
		}
	}
	if len(entries) == 0 {
		// The batch as a whole failed or clashed: install one by one now.
		// No pod is marked failed for it: the batch fails for one bad jar,
		// and the single installs tell which pod it belongs to.
		for _, a := range p.installs {
			if a.baseline {
				a.retryAt = now
			}
		}
	}
	p.needQuery = true
	p.mu.Unlock()
	p.sync()
}

// otherVersions reports whether the base has another version of name.
func (p *Provider) otherVersions(name, version string) bool {
	for key := range p.bizs {
		if n, v := splitKey(key); n == name && v != version {
			return true
		}
	}
	return false
}

// setRecord stores what the base reported unless a newer report is known.
func (p *Provider) setRecord(key string, rec *bizRecord) {
	if cur := p.bizs[key]; cur != nil && cur.seen.After(rec.seen) {
		return
	}
	// p.orphans is left alone: a biz listed again is the same orphan, and
	// reporting it on every periodic query would flood the node's Events.
	p.bizs[key] = rec
}

// dropRecord forgets a biz the base no longer has.
func (p *Provider) dropRecord(key string) {
	delete(p.bizs, key)
	delete(p.orphans, key)
	delete(p.installedURL, key)
}

// wants reports whether the pod has a valid container for name:version.
func (e *podEntry) wants(key string) bool {
	for _, s := range e.specs {
		if s.invalid == "" && s.key() == key {
			return true
		}
	}
	return false
}

// nodeRef is the object node-level Events are recorded on.
func (p *Provider) nodeRef() *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Node", Name: p.NodeName(), APIVersion: "v1"}
}

// splitKey splits name:version at the first colon: a biz name is a container
// name, which cannot hold one, while a version may.
func splitKey(key string) (name, version string) {
	name, version, _ = strings.Cut(key, ":")
	return name, version
}

// installedRecord is what an install reply says of the biz it installed: the
// state of bizInfos[0] and, when its last state record is of that state, the
// base's time and message of the change (the activation time a running
// container shows as startedAt). Without bizInfos the biz counts as
// ACTIVATED at publishedAt.
func installedRecord(infos []protocol.BizInfo, publishedAt time.Time) *bizRecord {
	rec := &bizRecord{state: protocol.BizActivated, changed: publishedAt, seen: publishedAt}
	if len(infos) == 0 {
		return rec
	}
	if st := infos[0].State(); st != "" {
		rec.state = st
	}
	if r, ok := infos[0].LatestStateRecord(); ok && protocol.ParseBizState(r.State) == rec.state {
		if at := r.ChangedAt(); !at.IsZero() {
			rec.changed = at
		}
		rec.reason, rec.message = r.Reason, r.Message
	}
	return rec
}

// failureText is the whole failure a reply reports: the summary a container
// status shows (its first line), then the base's full text, usually a Java
// stack trace, which the Event carries.
func failureText(summary, detail string) string {
	detail = strings.TrimSpace(detail)
	if detail == "" || strings.Contains(summary, detail) {
		return summary
	}
	return summary + "\n" + detail
}
