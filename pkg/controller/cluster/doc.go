// Package cluster shares the bases of one env among several controller
// replicas through Kubernetes Leases (coordination.k8s.io/v1), so that each
// base is served by exactly one replica at a time.
//
// # Design
//
// Every replica announces itself with a member Lease of its own (label
// module-controller.koupleless.io/lease=replica), renewed every
// RenewInterval. The live replicas are those whose member Lease changed
// within its duration, as seen by this replica's own clock (the approach of
// client-go leader election: no replica compares its clock with another's).
//
// Every base has a dedicated Lease in the controller's namespace (label
// module-controller.koupleless.io/lease=base, named after the base's node).
// The node's own Lease in kube-node-lease is not used: virtual-kubelet
// rewrites its holder to the node name on every renewal, the node lifecycle
// controller reads it as the node's heartbeat (so its duration cannot also be
// the failover time), and its RBAC is cluster infrastructure; a dedicated
// Lease keeps ownership, heartbeat and permissions apart.
//
// The base's owner is chosen by rendezvous (highest random weight) hashing of
// the base ID over the live replicas, with bounded loads (no replica takes
// more than its share rounded up), over the bases every replica sees alike:
// those with a Lease, plus the ones heard of lately. A replica joining or
// leaving moves the bases it gains or held, and few others (see Assign). The chosen replica creates or takes the base's
// Lease, with the resourceVersion of the Lease it read as precondition; a
// replica that is no longer chosen releases it (empty holder) and the chosen
// one takes it on its next round.
//
// A base's Lease is never renewed: it holds while its holder's member Lease
// does, as a session backs its locks, so the steady state costs one Lease
// write per replica per RenewInterval whatever the number of bases. A base
// Lease is taken from its holder once the holder's member Lease has not
// changed for its duration (or, for a holder without a member Lease, once
// the base Lease itself has not).
//
// A replica acts on a base only while Owns says so: it holds the base's
// Lease and the last successful write of its member Lease started less than
// RenewDeadline ago, which is shorter than the Lease's duration; it takes no
// base Lease while that is not so. A replica that cannot renew, or was
// stopped (SIGSTOP, a long GC pause, a partition), stops acting before any
// other replica may take its bases. On shutdown every Lease is released at
// once, so the next owners need not wait for expiry.
//
// A replica also shows on its member Lease whether it reaches the broker; one
// cut off for a lease duration while another has been connected that long
// is left out of the hashing and hands its bases over. When all are cut off
// (a broker outage) nothing moves.
//
// This package imports client-go and Prometheus only; it knows nothing of the
// controller, which consults it through the controller.Ownership interface.
package cluster
