// Package provider is the per-base virtual-kubelet provider: it translates
// module pods into biz commands and biz states into pod and node status.
//
// A Provider serves one base and plays four roles, whose contracts the
// Provider type documents: node.PodLifecycleHandler and node.PodNotifier for
// the pods bound to the base's node (CreatePod, UpdatePod, DeletePod,
// NotifyPods), node.NodeProvider for the node itself (nodeStatus, embedded),
// and the biz reconciler fed by the controller with what the base reports
// (OnBizStatus, OnBizOperation, OnBatchInstall, Baseline, Resync) and its
// liveness judgement (SetReadiness). The base's biz list is the source of
// truth; results are taken only for commands this provider has outstanding,
// and nothing is decided while the base is offline or has not been heard
// from since the controller (re)started or the tunnel returned.
//
// # The biz state machine
//
// Every name:version on the base is in one bizPhase: absent, installing,
// installRetry, onBase, uninstalling or uninstallRetry. The phase is read
// from the per-biz state (the base's record, the outstanding install or
// uninstall attempt) rather than stored; bizTransitions lists every
// transition and the event behind it, and a test drives each one.
//
// # One reconcile
//
// Every call that changes what is known runs reconcile (reconcile.go), the
// one place that decides commands, as named steps over one round:
//
//  1. newRound: which pod owns each name:version (the oldest live pod that
//     asks for it) and what the base must therefore run;
//  2. installWanted: install what is wanted and absent, retry due installs,
//     time out unanswered ones, replace a biz whose image changed;
//  3. retireDeletedPods: for each deleted pod, record which of its bizs are
//     gone, wait for an install the base may be running, decide the
//     uninstalls, and release the pod once all are gone (cmdReleasePod);
//  4. dropUnwantedInstalls: forget installs nothing wants or waits on;
//  5. reportOrphans: report bizs no pod asks for, once each, and uninstall
//     them if this controller installed them and UninstallOrphans is set;
//  6. sendUninstalls: send decided and due uninstalls;
//  7. queryIfNeeded: ask for the biz list when a step or a reply called for it.
//
// # Commands
//
// A command has a kind: cmdInstall, cmdUninstall and cmdQueryAll go to the
// base through the tunnel; cmdReleasePod deletes a pod from the API server
// through the controller's ReleasePod hook (the provider imports no
// client-go). Commands go through a bounded queue (dispatcher) that Run
// drains, so reporting never blocks on the tunnel; a command that cannot be
// sent, or gets no answer within the install timeout, is retried with
// backoff after querying the base.
//
// # Locking
//
// Provider.mu guards the pods and the per-biz state, which a reconcile reads
// together. The node's state (nodeStatus) and the command queue (dispatcher)
// have their own mutexes, always taken last and never held across a call.
package provider
