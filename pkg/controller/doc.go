// Package controller orchestrates the process: it consumes tunnel events and
// keeps one virtual node, with its pod controller, per live base.
//
// # Ownership and concurrency
//
// One goroutine, Run, owns the map of served bases and every judgement about
// them: it applies tunnel events (heartbeats, health replies, biz lists,
// operation results, baseline queries) and, on a ticker, checks liveness. Per
// base it starts a vnode: a provider.Provider (the base's pods and bizs), a
// virtual-kubelet NodeController (node status and Lease; a fresh one for
// every registration attempt, since a NodeController runs once), and a
// virtual-kubelet PodController. The PodControllers share one pod informer
// (one LIST+WATCH of the bound pods, indexed by node name): each gets a view
// of it that delivers and lists only its node's pods, fed by one event
// handler that dispatches by node name (pods.go). A panic in a base's
// goroutines tears down only that base.
//
// # Liveness
//
// A base is heard from through heartbeats and health replies. Silent for
// UnreachableAfter, its node turns Ready=Unknown; silent for RemoveAfter, its
// node, Lease and pods are deleted (retried until done). While the tunnel is
// disrupted — not connected to the broker, or most bases silent at once —
// nobody is judged: nodes keep their last known state and commands wait for
// each base's next sign of life (see docs/operations.md, "Tunnel disruption
// mode"). After a restart, existing nodes are adopted the same way.
//
// # Several replicas
//
// Config.Ownership decides which bases this replica serves (all of them by
// default). An OwnershipChanges (pkg/controller/cluster, Leases shared with
// the other replicas) also reports changes: a base gained is adopted from
// its existing node as after a restart (its pods adopted, its biz list
// queried, nothing installed before), a base lost is left with its node to
// the new owner. Every command goes through a tunnel that refuses a base not
// owned at the moment of sending, and GuardWrites refuses the API writes
// that name such a base's node, so a replica that lost a base acts on it no
// more, even when it resumes from a pause before it noticed.
//
// # Edge limits
//
// Every base has a token bucket for its messages; identities not served yet
// share one, so made-up identities cost no memory. MaxBases caps the bases
// served, and baselines are answered from the served bases' state only.
package controller
