package provider

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// bizPhase is where one name:version stands on the base, as far as this
// provider knows: the state machine every biz runs through. It is not stored
// but read from the provider's per-biz state (phaseOf): an outstanding
// uninstall takes precedence over an outstanding install, which takes
// precedence over the base's record. Whether a live pod wants the biz is not
// a phase but the input each reconcile compares the phase with; the base's
// own state of a biz it has (ACTIVATED, DEACTIVATED, BROKEN) is its record's,
// and only shows in the pod's status.
//
// The transitions, the event that causes each and the step that takes it,
// are listed in bizTransitions; TestBizTransitions drives a provider through
// every one of them.
//
//	absent ──installSent──► installing ──installOK, listed──► onBase
//	  ▲                      │     ▲                             │
//	  │       unanswered,    │     │ installRetryDue             │ unwanted
//	  │       repeat,refused ▼     │                             ▼
//	  ├──installAbandoned── installRetry                    uninstalling ◄──┐
//	  │                                                      │   │         │ uninstallRetryDue
//	  └────────────────── uninstallOK ◄──────────────────────┘   └──► uninstallRetry
//	                                                          uninstallRefused
//
// Besides: listed leads from absent and installRetry to onBase, unlisted
// from onBase back to absent, unwanted from installing and installRetry to
// uninstalling (a deleted pod's install the base may yet have carried out),
// and a baseline resets every biz to absent or installing.
type bizPhase uint8

const (
	// bizAbsent: the base does not have it, as far as its last list and
	// replies say (or its list is not known yet), and nothing is outstanding.
	bizAbsent bizPhase = iota
	// bizInstalling: installBiz was sent (alone or in a baseline) and waits
	// for its answer, for at most InstallTimeout.
	bizInstalling
	// bizInstallRetry: the last install failed, clashed with another command,
	// was answered "already installed", went unanswered or could not be sent;
	// it is sent again at its retry time unless the biz list shows the biz.
	bizInstallRetry
	// bizOnBase: the base reported it, by its biz list or an install reply.
	bizOnBase
	// bizUninstalling: uninstallBiz was decided (a deleted pod's biz, an
	// image replaced, an orphan this controller installed) and sent; it is
	// sent again, with a biz-list query, if unanswered for InstallTimeout.
	bizUninstalling
	// bizUninstallRetry: the last uninstall failed, clashed or could not be
	// sent; it is sent again at its retry time.
	bizUninstallRetry
)

// String names the phase for test failures and logs.
func (ph bizPhase) String() string {
	switch ph {
	case bizAbsent:
		return "absent"
	case bizInstalling:
		return "installing"
	case bizInstallRetry:
		return "installRetry"
	case bizOnBase:
		return "onBase"
	case bizUninstalling:
		return "uninstalling"
	case bizUninstallRetry:
		return "uninstallRetry"
	}
	return "unknown"
}

// bizEvent is what moves a biz from one phase to another.
type bizEvent string

// The events of bizTransitions. Reconcile steps cause the first kind, the
// base's messages (On…, Baseline) and send failures the second.
const (
	evInstallSent         bizEvent = "installSent"         // installWanted: a live pod wants it and the base's list lacks it
	evInstallRetryDue     bizEvent = "installRetryDue"     // installWanted: its retry time came
	evInstallUnanswered   bizEvent = "installUnanswered"   // installWanted: no answer within InstallTimeout (queries the base)
	evInstallAbandoned    bizEvent = "installAbandoned"    // dropUnwantedInstalls: no live pod wants it and no deleted pod waits on it
	evInstallOK           bizEvent = "installOK"           // OnBizOperation, OnBatchInstall: installed
	evInstallRepeat       bizEvent = "installRepeat"       // OnBizOperation: already installed (queries the base)
	evInstallRefused      bizEvent = "installRefused"      // OnBizOperation, OnBatchInstall, a send failure: failed or clashed
	evListed              bizEvent = "listed"              // OnBizStatus and the next reconcile: the list has it
	evUnlisted            bizEvent = "unlisted"            // OnBizStatus: a newer list lacks it
	evUnwanted            bizEvent = "unwanted"            // retireDeletedPods, installWanted (image changed), reportOrphans (UninstallOrphans)
	evUninstallUnanswered bizEvent = "uninstallUnanswered" // sendUninstalls: no answer within InstallTimeout (resent, queries the base)
	evUninstallRetryDue   bizEvent = "uninstallRetryDue"   // sendUninstalls: its retry time came
	evUninstallOK         bizEvent = "uninstallOK"         // OnBizOperation: uninstalled, or not found
	evUninstallRefused    bizEvent = "uninstallRefused"    // OnBizOperation, a send failure: failed or clashed
	evBaseline            bizEvent = "baseline"            // Baseline: the base restarted; old commands and records are forgotten
)

// bizTransition is one edge of the biz state machine.
type bizTransition struct {
	from bizPhase
	on   bizEvent
	to   bizPhase
}

// bizTransitions is every transition the provider makes. A pair that is not
// listed leaves the phase as it is (a reply nothing waits for is dropped
// before it changes anything: see solicited).
var bizTransitions = []bizTransition{
	{bizAbsent, evInstallSent, bizInstalling},
	{bizAbsent, evUnwanted, bizUninstalling}, // a deleted pod's biz while the list is not known
	{bizAbsent, evListed, bizOnBase},
	{bizInstalling, evInstallOK, bizOnBase},
	{bizInstalling, evListed, bizOnBase},
	{bizInstalling, evInstallRepeat, bizInstallRetry},
	{bizInstalling, evInstallRefused, bizInstallRetry},
	{bizInstalling, evInstallUnanswered, bizInstallRetry},
	{bizInstalling, evUnwanted, bizUninstalling}, // a deleted pod's install that went unanswered
	{bizInstalling, evInstallAbandoned, bizAbsent},
	{bizInstallRetry, evInstallRetryDue, bizInstalling},
	{bizInstallRetry, evListed, bizOnBase},
	{bizInstallRetry, evUnwanted, bizUninstalling}, // a deleted pod's install that clashed: the base may have it
	{bizInstallRetry, evInstallAbandoned, bizAbsent},
	{bizOnBase, evUnlisted, bizAbsent},
	{bizOnBase, evUnwanted, bizUninstalling},
	{bizUninstalling, evUninstallOK, bizAbsent},
	{bizUninstalling, evUninstallRefused, bizUninstallRetry},
	{bizUninstalling, evUninstallUnanswered, bizUninstalling},
	{bizUninstallRetry, evUninstallRetryDue, bizUninstalling},
	{bizOnBase, evBaseline, bizInstalling}, // a live pod wants it
	{bizUninstalling, evBaseline, bizAbsent},
}

// phaseOf returns the phase of name:version key.
func (p *Provider) phaseOf(key string) bizPhase {
	if a := p.uninstalls[key]; a != nil {
		if a.retryAt.IsZero() {
			return bizUninstalling
		}
		return bizUninstallRetry
	}
	if a := p.installs[key]; a != nil {
		if a.retryAt.IsZero() {
			return bizInstalling
		}
		return bizInstallRetry
	}
	if p.bizs[key] != nil {
		return bizOnBase
	}
	return bizAbsent
}

// commandKind is what a command does.
type commandKind uint8

const (
	// cmdInstall sends installBiz to the base.
	cmdInstall commandKind = iota + 1
	// cmdUninstall sends uninstallBiz to the base.
	cmdUninstall
	// cmdQueryAll asks the base for its biz list (queryAllBiz).
	cmdQueryAll
	// cmdReleasePod deletes a deleted pod whose bizs are all gone from the
	// API server, through Config.ReleasePod: it never reaches the base.
	cmdReleasePod
)

// String is the protocol's command name, or "releasePod".
func (k commandKind) String() string {
	switch k {
	case cmdInstall:
		return protocol.CommandInstallBiz
	case cmdUninstall:
		return protocol.CommandUninstallBiz
	case cmdQueryAll:
		return protocol.CommandQueryAllBiz
	case cmdReleasePod:
		return "releasePod"
	}
	return "unknown"
}

// command is one thing a reconcile decided to send, to the base or (a pod
// release) to the API server.
type command struct {
	kind    commandKind
	biz     protocol.BizModel // cmdInstall, cmdUninstall
	release *corev1.Pod       // cmdReleasePod: the pod with its last status
	entry   *podEntry         // cmdReleasePod: its entry, restored if the release fails
}

// round is one reconcile: what it compares, and the commands it decided.
type round struct {
	p     *Provider
	now   time.Time
	owner map[string]string  // name:version → the live pod that owns it
	want  map[string]bizSpec // name:version → the owner's spec: what the base must run
	// awaited holds the installs a deleted pod waits on before it may
	// uninstall: they stay although no live pod wants them.
	awaited map[string]bool
	cmds    []command
}

// reconcile compares the pods with the base's bizs and returns the commands
// that close the gap. It is the one place that decides what to send; its
// steps run in this order, each over the state the previous one left.
func (p *Provider) reconcile(now time.Time) []command {
	r := p.newRound(now)
	r.installWanted()
	r.retireDeletedPods()
	r.dropUnwantedInstalls()
	r.reportOrphans()
	r.sendUninstalls()
	r.queryIfNeeded()
	return r.cmds
}

// newRound collects what the base must run: every valid spec of a live pod
// that owns its name:version.
func (p *Provider) newRound(now time.Time) *round {
	r := &round{p: p, now: now, owner: p.owners(), want: map[string]bizSpec{}, awaited: map[string]bool{}}
	for _, e := range p.pods {
		for _, s := range e.specs {
			if s.invalid == "" && r.owner[s.key()] == e.key {
				r.want[s.key()] = s
			}
		}
	}
	return r
}

func (r *round) send(c command) { r.cmds = append(r.cmds, c) }

// installWanted installs what live pods ask for and the base lacks, once its
// list is known: absent → installing, installRetry → installing when due,
// installing → installRetry when unanswered. A biz on the base is wanted as
// it is, unless the pod's image changed since this controller installed it:
// then it is replaced (onBase → uninstalling; the install follows once the
// base confirms the uninstall).
func (r *round) installWanted() {
	p := r.p
	for key, s := range r.want {
		if rec := p.bizs[key]; rec != nil {
			if url, ok := p.installedURL[key]; ok && url != s.biz.BizURL && p.uninstalls[key] == nil {
				p.uninstalls[key] = &attempt{biz: s.biz}
				continue
			}
			delete(p.installs, key)
			continue
		}
		if !p.inventory || p.uninstalls[key] != nil {
			continue
		}
		a := p.installs[key]
		switch {
		case a == nil:
			a = &attempt{biz: s.biz}
			p.installs[key] = a
		case a.retryAt.IsZero() && r.now.Sub(a.sentAt) >= p.cfg.InstallTimeout:
			// Unanswered: ask what the base has, and try again after a backoff.
			p.needQuery = true
			p.failed(a, "no answer from the base to installBiz within "+p.cfg.InstallTimeout.String(), r.now)
			continue
		case !a.due(r.now, p.cfg.InstallTimeout):
			continue
		}
		a.biz, a.sentAt, a.retryAt, a.baseline, a.maybeInstalled = s.biz, r.now, time.Time{}, false, true
		a.tries++
		p.installedURL[key] = s.biz.BizURL
		r.send(command{kind: cmdInstall, biz: s.biz})
	}
}

// retireDeletedPods uninstalls what deleted pods had, unless a live pod
// claims it, and releases each deleted pod whose bizs are all gone.
func (r *round) retireDeletedPods() {
	for _, e := range r.p.pods {
		if !e.deleting || e.released {
			continue
		}
		if r.retire(e) {
			r.release(e)
		}
	}
}

// retire decides, for each biz of deleted pod e, whether it is gone (so
// recorded in e.gone), must wait for an install's answer, or must be
// uninstalled (→ uninstalling). It reports whether all are gone.
func (r *round) retire(e *podEntry) (done bool) {
	p := r.p
	done = true
	for _, s := range e.specs {
		if s.invalid != "" {
			continue
		}
		key := s.key()
		if _, ok := e.gone[key]; ok {
			continue
		}
		if r.owner[key] != "" {
			e.gone[key] = r.now // it stays for the live pod that claims it
			continue
		}
		if a := p.installs[key]; a != nil && a.maybeInstalled {
			if a.retryAt.IsZero() && r.now.Sub(a.sentAt) < p.cfg.InstallTimeout {
				// The base may be installing it right now, and an
				// uninstall would clash with that: wait for the answer.
				r.awaited[key] = true
				done = false
				continue
			}
			// Unanswered, or refused while another command for it ran:
			// the base may have it, whatever its list said.
			if p.uninstalls[key] == nil {
				p.uninstalls[key] = &attempt{biz: s.biz}
			}
		}
		if p.inventory && p.bizs[key] == nil && p.uninstalls[key] == nil {
			e.gone[key] = r.now
			continue
		}
		done = false
		if p.uninstalls[key] == nil {
			p.uninstalls[key] = &attempt{biz: s.biz}
		}
	}
	return done
}

// release hands deleted pod e, whose bizs are all gone, to the API server
// (cmdReleasePod): it leaves the provider now.
func (r *round) release(e *podEntry) {
	p := r.p
	e.released = true
	pod := p.podWithStatus(e)
	// The pod leaves the provider now: record its last transitions.
	p.recordTransitions(e, pod)
	r.send(command{kind: cmdReleasePod, release: pod, entry: e})
	delete(p.pods, e.key)
}

// dropUnwantedInstalls forgets the installs no live pod wants any more and
// no deleted pod waits on (installing, installRetry → absent).
func (r *round) dropUnwantedInstalls() {
	for key := range r.p.installs {
		if _, wanted := r.want[key]; !wanted && !r.awaited[key] {
			delete(r.p.installs, key)
		}
	}
}

// reportOrphans reports bizs no pod asks for, once each, once every pod
// bound to the node is known (a restarted controller learns the base's bizs
// before virtual-kubelet handed it the pods). With UninstallOrphans, an
// orphan this controller installed is uninstalled (onBase → uninstalling).
func (r *round) reportOrphans() {
	p := r.p
	if p.cfg.AwaitPodSync && !p.podsSynced {
		return
	}
	for key := range p.bizs {
		if _, wanted := r.want[key]; wanted {
			delete(p.orphans, key)
			continue
		}
		if p.uninstalls[key] != nil || p.orphans[key] {
			continue
		}
		p.orphans[key] = true
		if p.cfg.OrphanBizs != nil {
			p.cfg.OrphanBizs.Inc()
		}
		p.cfg.Events.Eventf(p.nodeRef(), corev1.EventTypeWarning, api.ReasonOrphanBiz,
			"biz %s runs on the base but no pod on this node asks for it", key)
		if url, ours := p.installedURL[key]; ours && p.cfg.UninstallOrphans {
			n, v := splitKey(key)
			p.uninstalls[key] = &attempt{biz: protocol.BizModel{BizName: n, BizVersion: v, BizURL: url}}
		}
	}
}

// sendUninstalls sends the uninstalls decided above, and those due again:
// every kind (deleted pod, image change, orphan) is retried the same way.
func (r *round) sendUninstalls() {
	p := r.p
	for _, a := range p.uninstalls {
		switch {
		case a.tries == 0:
		case !a.due(r.now, p.cfg.InstallTimeout):
			continue
		case a.retryAt.IsZero():
			p.needQuery = true // unanswered: ask what the base has
		}
		a.sentAt, a.retryAt = r.now, time.Time{}
		a.tries++
		r.send(command{kind: cmdUninstall, biz: a.biz})
	}
}

// queryIfNeeded asks for the base's biz list when a step or a reply called
// for it.
func (r *round) queryIfNeeded() {
	if r.p.needQuery {
		r.p.needQuery = false
		r.send(command{kind: cmdQueryAll})
	}
}
