package basesim

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// knobs are the behaviour settings a test may change while the base runs.
type knobs struct {
	mu             sync.RWMutex
	installDelay   time.Duration
	uninstallDelay time.Duration
	failInstall    func(protocol.BizModel) error
	failOf         map[string]bool
	failureRate    float64
	unreachable    map[string]bool
	activation     Activation
}

func (k *knobs) init(cfg Config) {
	k.installDelay = cfg.InstallDelay
	k.uninstallDelay = cfg.UninstallDelay
	k.failInstall = cfg.FailInstall
	k.failOf = toSet(cfg.FailInstallOf)
	k.failureRate = cfg.FailureRate
	k.unreachable = toSet(cfg.UnreachableURLs)
	k.activation = cfg.Activation
}

func toSet(items []string) map[string]bool {
	s := make(map[string]bool, len(items))
	for _, it := range items {
		s[it] = true
	}
	return s
}

// SetInstallDelay sets how long later installs stay RESOLVED before they start.
func (b *Base) SetInstallDelay(d time.Duration) {
	b.knobs.mu.Lock()
	defer b.knobs.mu.Unlock()
	b.knobs.installDelay = max(d, 0)
}

// SetUninstallDelay sets how long later uninstalls keep the biz DEACTIVATED (KILLING)
// before removing it.
func (b *Base) SetUninstallDelay(d time.Duration) {
	b.knobs.mu.Lock()
	defer b.knobs.mu.Unlock()
	b.knobs.uninstallDelay = max(d, 0)
}

// SetFailInstall sets a function asked before every later install; a non-nil error makes
// that install fail with the error's text. nil removes it.
func (b *Base) SetFailInstall(fn func(protocol.BizModel) error) {
	b.knobs.mu.Lock()
	defer b.knobs.mu.Unlock()
	b.knobs.failInstall = fn
}

// FailInstallOf makes later installs fail for the given biz names, "name:version" keys or
// biz URLs, replacing the previous list; no arguments clears it.
func (b *Base) FailInstallOf(namesKeysOrURLs ...string) {
	b.knobs.mu.Lock()
	defer b.knobs.mu.Unlock()
	b.knobs.failOf = toSet(namesKeysOrURLs)
}

// SetFailureRate makes each later install fail with probability p (clamped to [0, 1]).
func (b *Base) SetFailureRate(p float64) {
	b.knobs.mu.Lock()
	defer b.knobs.mu.Unlock()
	b.knobs.failureRate = min(max(p, 0), 1)
}

// SetUnreachableURLs marks biz URLs whose download fails, replacing the previous list: a
// single install of one fails with a FileNotFoundException, and a baseline containing one
// fails as a whole (docs/protocol.md, "Batch install result"). No arguments clears it.
func (b *Base) SetUnreachableURLs(urls ...string) {
	b.knobs.mu.Lock()
	defer b.knobs.mu.Unlock()
	b.knobs.unreachable = toSet(urls)
}

// SetActivation sets, for later installs, what an install next to an ACTIVATED version of
// the same name does (docs/protocol.md, "A second version of an active biz").
func (b *Base) SetActivation(a Activation) {
	b.knobs.mu.Lock()
	defer b.knobs.mu.Unlock()
	b.knobs.activation = a
}

// SetActivateNewModule sets the JVM property activate.new.module: true is ActivateNew
// (the simulator's default), false is KeepOld (SOFAArk's default).
func (b *Base) SetActivateNewModule(on bool) {
	if on {
		b.SetActivation(ActivateNew)
	} else {
		b.SetActivation(KeepOld)
	}
}

// Silence stops (true) or resumes (false) every publish of the base: heartbeats, replies
// and, on a restart, queryBaseline, like a hung base or one cut off from the broker on its
// way out. Commands are still received, recorded and executed; their replies are lost.
// SendRaw and PublishRaw still work.
func (b *Base) Silence(on bool) {
	b.silenced.Store(on)
	b.logger().WithField("silenced", on).Info("silence changed")
}

// Silenced reports whether the base is silenced.
func (b *Base) Silenced() bool {
	return b.silenced.Load()
}

// StopHeartbeats kills the heartbeat task for good, as one failed publish does in a real
// base (docs/protocol.md, "The heartbeat task dies"): the base keeps answering commands,
// health included, and sends
// heartbeats again only after Restart.
func (b *Base) StopHeartbeats() {
	if p := b.current(); p != nil {
		p.stopHeartbeats()
		b.logger().Info("heartbeats stopped")
	}
}

// installSettings is a consistent view of the knobs for one install.
type installSettings struct {
	delay      time.Duration
	activation Activation
}

func (b *Base) installSettings() installSettings {
	b.knobs.mu.RLock()
	defer b.knobs.mu.RUnlock()
	return installSettings{delay: b.knobs.installDelay, activation: b.knobs.activation}
}

func (b *Base) uninstallDelay() time.Duration {
	b.knobs.mu.RLock()
	defer b.knobs.mu.RUnlock()
	return b.knobs.uninstallDelay
}

// unreachable reports whether url cannot be downloaded.
func (b *Base) unreachable(url string) bool {
	b.knobs.mu.RLock()
	defer b.knobs.mu.RUnlock()
	return b.knobs.unreachable[url]
}

// startFailure returns why installing m fails (not counting unreachable URLs), or "".
func (b *Base) startFailure(m protocol.BizModel) string {
	b.knobs.mu.RLock()
	fn, failOf, rate := b.knobs.failInstall, b.knobs.failOf, b.knobs.failureRate
	b.knobs.mu.RUnlock()
	if fn != nil {
		if err := fn(m); err != nil {
			return err.Error()
		}
	}
	if failOf[m.BizName] || failOf[m.Key()] || (m.BizURL != "" && failOf[m.BizURL]) {
		return "simulated start failure of biz " + m.Key()
	}
	if rate > 0 && rand.Float64() < rate {
		return "simulated random start failure of biz " + m.Key()
	}
	return ""
}
