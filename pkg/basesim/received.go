package basesim

import (
	"slices"
	"sync"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// CommandBaseline is the Command.Name of a baseline (the last level of
// koupleless_<env>/<id>/base/baseline), which the base runs as batchInstallBiz.
const CommandBaseline = "baseline"

// Command is one message a simulated base received on its command topics.
type Command struct {
	// Name is the topic's last level, on which the base dispatches: one of the
	// protocol.Command… constants, CommandBaseline, or anything else (ignored by the base).
	Name string
	// Topic is the full topic.
	Topic string
	// Payload is the raw body. The caller must not modify it.
	Payload []byte
	// Bizs holds the decoded body of installBiz and uninstallBiz (one element) and of a
	// baseline (every element); nil for other commands or an undecodable body.
	Bizs []protocol.BizModel
	// Malformed is true if the body could not be decoded: the base ignores such commands.
	Malformed bool
	// At is when the base received it, on Config.Now's clock.
	At time.Time
}

// received logs a base's commands: exact counts of all of them, and the latest few.
type received struct {
	mu      sync.Mutex
	limit   int
	entries []Command
	counts  map[string]map[string]int // command → key ("" = all) → count
}

func newReceived(limit int) *received {
	return &received{limit: limit, counts: map[string]map[string]int{}}
}

func (r *received) add(c Command) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byKey := r.counts[c.Name]
	if byKey == nil {
		byKey = map[string]int{}
		r.counts[c.Name] = byKey
	}
	byKey[""]++
	seen := make(map[string]bool, len(c.Bizs))
	for _, m := range c.Bizs {
		if k := m.Key(); !seen[k] {
			seen[k] = true
			byKey[k]++
		}
	}
	if r.limit <= 0 {
		return
	}
	if len(r.entries) >= r.limit {
		r.entries = slices.Delete(r.entries, 0, len(r.entries)-r.limit+1)
	}
	r.entries = append(r.entries, c)
}

func (r *received) list() []Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

func (r *received) count(command, key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[command][key]
}

func (r *received) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = nil
	r.counts = map[string]map[string]int{}
}
