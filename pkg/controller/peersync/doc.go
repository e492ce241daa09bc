// Package peersync keeps every peer Deployment at one replica per virtual
// node its pod template can be scheduled onto.
//
// A Deployment labelled virtual-kubelet.koupleless.io/strategy=peer gets
// spec.replicas = the number of schedulable virtual nodes that satisfy
// the template's nodeSelector, required node affinity and NoSchedule/NoExecute
// taints, evaluated with Kubernetes' own scheduling helpers
// (k8s.io/component-helpers). Replicas are written through the scale
// subresource, only when they differ, and each change is recorded as an Event
// on the Deployment. The label virtual-kubelet.koupleless.io/replicas-control=disabled
// opts a Deployment out.
//
// A NotReady node still counts, as a DaemonSet keeps its pod on one: it is a
// base this controller cannot hear from right now (a partition, a broker
// outage), and scaling down would uninstall its module for a network blip.
// The node leaves, and the count drops, when the base is judged gone.
//
// Which pods go on a scale-down is the ReplicaSet's choice; before scaling
// down, the controller gives the pods bound to nodes that no longer count
// (removed, cordoned, relabelled) the lowest controller.kubernetes.io/pod-deletion-cost,
// so the ReplicaSet removes those and not the module of a base that still
// matches. This is best effort: without the pods patch permission the
// ReplicaSet's own ranking decides.
//
// The controller follows sample-controller: informer handlers only enqueue
// Deployment keys (a node change enqueues every peer Deployment), and workers
// run a level-triggered sync with rate-limited requeue. Every replica of
// module-controller may run it: they compute the same number and do not write
// when it is already set.
//
// It needs: apps deployments get/list/watch, apps deployments/scale
// get/update, core events create/patch, core nodes list/watch, and for
// choosing the pods that go, core pods list/patch. It imports pkg/api for
// the label keys and nothing else of the project.
//
// Usage:
//
//	ps, err := peersync.New(peersync.Config{Client: client, Registerer: reg})
//	if err != nil { ... }
//	go ps.Run(ctx)
//	<-ps.Ready()
package peersync
