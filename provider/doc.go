// Package provider is the per-base virtual-kubelet provider: it translates
// module pods into biz commands and biz states into pod and node status.
//
// A Provider serves one base. virtual-kubelet hands it the pods bound to the
// base's node (CreatePod, UpdatePod, DeletePod); the controller hands it what
// the base reports (OnBizStatus, OnBizOperation, OnBatchInstall, UpdateBase)
// and its liveness judgement (SetReadiness). From both it reconciles: which
// bizs to install or uninstall, and what every container, pod and the node
// show. The base's biz list is the source of truth; results are taken only
// for commands this provider has outstanding, and nothing is decided while
// the base is offline or has not been heard from since the controller
// (re)started or the tunnel returned.
//
// Commands go through a bounded queue that Run drains, so reporting never
// blocks on the tunnel; a command that cannot be sent, or gets no answer
// within the install timeout, is retried with backoff after querying the
// base. The provider imports no client-go: pods it must delete go through the
// controller's ReleasePod hook.
package provider
