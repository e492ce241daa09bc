package basesim

import (
	"cmp"
	"hash/fnv"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// SOFAArk state change reasons (docs/protocol.md, "State-change reasons").
const (
	reasonCreated  = "CREATED"
	reasonStarted  = "STARTED"
	reasonSwitched = "SWITCHED"
	reasonKilling  = "KILLING"
	reasonStopped  = "STOPPED"
)

// Biz is a snapshot of one biz registered on a simulated base.
type Biz struct {
	// Name and Version identify the biz.
	Name    string
	Version string
	// URL is the URL it was installed from.
	URL string
	// State is its current state.
	State protocol.BizState
	// Records is its state history, oldest first.
	Records []protocol.StateRecord
	// Static is true for a biz from Config.StaticBizs.
	Static bool
}

// Key returns protocol.BizKey(Name, Version).
func (z Biz) Key() string {
	return protocol.BizKey(z.Name, z.Version)
}

// bizEntry is a registered biz.
type bizEntry struct {
	model        protocol.BizModel
	state        protocol.BizState
	records      []protocol.StateRecord
	elapsedSpace int64
	workDir      string
	static       bool
}

func (e *bizEntry) key() string { return e.model.Key() }

func (e *bizEntry) setState(s protocol.BizState, reason, msg string, now time.Time) {
	e.state = s
	e.records = append(e.records, protocol.StateRecord{
		ChangeTime: now.UnixMilli(),
		State:      string(s),
		Reason:     reason,
		Message:    msg,
	})
}

func (e *bizEntry) snapshot() Biz {
	return Biz{
		Name:    e.model.BizName,
		Version: e.model.BizVersion,
		URL:     e.model.BizURL,
		State:   e.state,
		Records: slices.Clone(e.records),
		Static:  e.static,
	}
}

// wire returns the entry as SOFAArk's BizModel in a bizInfos array.
func (e *bizEntry) wire() bizModelJSON {
	dir := e.workDir
	name := e.model.BizName
	return bizModelJSON{
		Attributes:      map[string]string{},
		BizName:         name,
		BizState:        e.state,
		BizStateRecords: slices.Clone(e.records),
		BizTempWorkDir:  dir,
		BizURL:          "file:" + dir + "/",
		BizVersion:      e.model.BizVersion,
		ClassPath: []string{
			"file:" + dir + "/",
			"file:" + dir + "/lib/",
			"file:" + dir + "/lib/" + name + "-" + e.model.BizVersion + ".jar",
		},
		DeclaredMode:                  true,
		DenyImportClasses:             []string{},
		DenyImportPackageNodes:        []string{},
		DenyImportPackageStems:        []string{},
		DenyImportPackages:            []string{},
		DenyImportResources:           []string{},
		DenyPrefixImportResourceStems: []string{},
		DenySuffixImportResourceStems: []string{},
		Identity:                      e.key(),
		InjectExportPackages:          []string{},
		InjectPluginDependencies:      []string{},
		MainClass:                     "com.alipay.sofa.web." + javaIdentifier(name) + ".Application",
		Priority:                      defaultBizPriority,
		WebContextPath:                name,
	}
}

// registry is the biz registry of one simulated JVM plus arklet's per-biz command lock.
type registry struct {
	mu    sync.Mutex
	bizs  map[string]*bizEntry
	locks map[string]string // key → command holding the lock
}

func newRegistry() *registry {
	return &registry{bizs: map[string]*bizEntry{}, locks: map[string]string{}}
}

// tryLock takes the per-biz lock for key on behalf of command. If another command holds
// it, tryLock returns that command and false: the lock fails rather than waits
// (docs/protocol.md, "Per-biz command lock").
func (r *registry) tryLock(key, command string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if running, held := r.locks[key]; held {
		return running, false
	}
	r.locks[key] = command
	return "", true
}

func (r *registry) unlock(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.locks, key)
}

// register adds m as RESOLVED (reason CREATED). It returns false, changing nothing, if
// that name:version is already registered (REPEAT_BIZ).
func (r *registry) register(m protocol.BizModel, now time.Time, static bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := m.Key()
	if _, ok := r.bizs[key]; ok {
		return false
	}
	e := &bizEntry{
		model:        m,
		elapsedSpace: metaspaceGrowth(key),
		workDir:      path.Join("/tmp/sofa-ark", m.BizName+"-"+m.BizVersion+"-"+strings.ReplaceAll(now.Format(workDirTimeLayout), ".", "")+"-unpack"),
		static:       static,
	}
	e.setState(protocol.BizResolved, reasonCreated, "", now)
	r.bizs[key] = e
	return true
}

// start finishes the install of key after a successful start, applying SOFAArk's rule for
// a name that already has an ACTIVATED version (docs/protocol.md, "A second version of an
// active biz"), and returns the biz as the
// install reply describes it. ok is false if key is no longer registered.
func (r *registry) start(key string, mode Activation, now time.Time) (bizModelJSON, int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.bizs[key]
	if !ok {
		return bizModelJSON{}, 0, false
	}
	var active *bizEntry
	for _, o := range r.sortedLocked() {
		if o != e && o.model.BizName == e.model.BizName && o.state == protocol.BizActivated {
			active = o
			break
		}
	}
	switch {
	case active == nil || mode == ActivateAll:
		e.setState(protocol.BizActivated, reasonStarted, "", now)
	case mode == ActivateNew:
		active.setState(protocol.BizDeactivated, reasonSwitched, "switch to new biz "+key, now)
		e.setState(protocol.BizActivated, reasonStarted, "switch from old biz: "+active.key(), now)
	default:
		e.setState(protocol.BizDeactivated, reasonStarted, msgStartDeactivated, now)
	}
	return e.wire(), e.elapsedSpace, true
}

// remove unregisters key if it is registered and reports whether it was.
func (r *registry) remove(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.bizs[key]
	delete(r.bizs, key)
	return ok
}

// beginStop moves key to DEACTIVATED (reason KILLING), as SOFAArk does when it starts to
// stop a biz, and reports whether key is registered.
func (r *registry) beginStop(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.bizs[key]
	if !ok {
		return false
	}
	e.setState(protocol.BizDeactivated, reasonKilling, "", now)
	return true
}

// finishStop records STOPPED and unregisters key.
func (r *registry) finishStop(key string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.bizs[key]; ok {
		e.setState(protocol.BizStopped, reasonStopped, "", now)
		delete(r.bizs, key)
	}
}

// has reports whether key is registered.
func (r *registry) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.bizs[key]
	return ok
}

// keysOfName returns the keys of every registered version of name.
func (r *registry) keysOfName(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for _, e := range r.sortedLocked() {
		if e.model.BizName == name {
			keys = append(keys, e.key())
		}
	}
	return keys
}

// sortedLocked returns the entries by name, then version: the order in which a real base
// walks its registry. r.mu must be held.
func (r *registry) sortedLocked() []*bizEntry {
	out := make([]*bizEntry, 0, len(r.bizs))
	for _, e := range r.bizs {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *bizEntry) int {
		return cmp.Or(cmp.Compare(a.model.BizName, b.model.BizName), cmp.Compare(a.model.BizVersion, b.model.BizVersion))
	})
	return out
}

// snapshot returns every registered biz.
func (r *registry) snapshot() []Biz {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries := r.sortedLocked()
	out := make([]Biz, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.snapshot())
	}
	return out
}

// simpleBiz returns the queryAllBiz answer: every registered biz, state lower case
// (docs/protocol.md, "Query all biz").
func (r *registry) simpleBiz() []protocol.SimpleBizInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries := r.sortedLocked()
	out := make([]protocol.SimpleBizInfo, 0, len(entries))
	for _, e := range entries {
		info := protocol.SimpleBizInfo{
			Name:    e.model.BizName,
			Version: e.model.BizVersion,
			State:   strings.ToLower(string(e.state)),
		}
		if n := len(e.records); n > 0 {
			rec := e.records[n-1]
			info.LatestStateRecord = &rec
		}
		out = append(out, info)
	}
	return out
}

// summaries returns every registered biz as health's bizListInfo describes it, and the
// total Metaspace the bizs take.
func (r *registry) summaries() ([]protocol.BizSummary, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries := r.sortedLocked()
	out := make([]protocol.BizSummary, 0, len(entries))
	var space int64
	for _, e := range entries {
		out = append(out, protocol.BizSummary{
			BizName:        e.model.BizName,
			BizState:       string(e.state),
			BizVersion:     e.model.BizVersion,
			WebContextPath: e.model.BizName,
		})
		space += e.elapsedSpace
	}
	return out, space
}

// metaspaceGrowth is a stable, plausible Metaspace growth for installing key: 32 to 40 MiB
// in 64 KiB steps.
func metaspaceGrowth(key string) int64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key)) // hash.Hash.Write never fails
	return 32<<20 + int64(h.Sum32()%128)<<16
}
