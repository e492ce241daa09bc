package provider

import (
	"sync"

	"github.com/virtual-kubelet/virtual-kubelet/log"
)

// maxQueuedCommands bounds the commands waiting for Run. Reconciles are
// cheap and repeat, so a full queue drops the excess (counted) instead of
// blocking the caller, the controller's event loop: an install or uninstall
// dropped here stays outstanding and is retried once it times out.
const maxQueuedCommands = 256

// dispatcher is the bounded queue between the reconciler, which decides
// commands under Provider.mu, and Provider.Run, which sends them.
//
// Contract: enqueue never blocks and never fails; what does not fit is
// dropped, logged and counted, and the reconciler's attempt for it stays
// outstanding so that it is decided again once it times out. take empties
// the queue; queued holds one token whenever the queue may be non-empty.
// Its mutex is a leaf, like nodeStatus's.
type dispatcher struct {
	baseID  string
	dropped Counter       // may be nil
	queued  chan struct{} // one-slot mailbox: the queue has commands

	mu    sync.Mutex
	queue []command // at most maxQueuedCommands
}

func newDispatcher(baseID string, dropped Counter) *dispatcher {
	return &dispatcher{baseID: baseID, dropped: dropped, queued: make(chan struct{}, 1)}
}

// take empties the command queue.
func (d *dispatcher) take() []command {
	d.mu.Lock()
	defer d.mu.Unlock()
	cmds := d.queue
	d.queue = nil
	return cmds
}

// enqueue hands cmds to Run without ever blocking.
func (d *dispatcher) enqueue(cmds []command) {
	if len(cmds) == 0 {
		return
	}
	d.mu.Lock()
	room := maxQueuedCommands - len(d.queue)
	dropped := 0
	if len(cmds) > room {
		dropped = len(cmds) - max(room, 0)
		cmds = cmds[:max(room, 0)]
	}
	d.queue = append(d.queue, cmds...)
	d.mu.Unlock()
	if dropped > 0 {
		log.L.WithField("base", d.baseID).WithField("dropped", dropped).Warn("command queue full; dropped commands will be retried")
		for range dropped {
			if d.dropped != nil {
				d.dropped.Inc()
			}
		}
	}
	select {
	case d.queued <- struct{}{}:
	default:
	}
}
