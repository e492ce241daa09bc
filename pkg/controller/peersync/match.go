package peersync

import (
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	schedulingcorev1 "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/moduleops/module-controller/pkg/api"
)

// matcher decides whether a pod template can be scheduled onto a node. It is
// built once per sync and applied to every node.
type matcher struct {
	template    *corev1.PodTemplateSpec
	affinity    nodeaffinity.RequiredNodeAffinity
	tolerations []corev1.Toleration
}

// newMatcher parses the template's nodeSelector and required node affinity.
func newMatcher(template *corev1.PodTemplateSpec) matcher {
	return matcher{
		template:    template,
		affinity:    nodeaffinity.NewRequiredNodeAffinity(template.Spec.NodeSelector, template.Spec.Affinity),
		tolerations: template.Spec.Tolerations,
	}
}

// isVirtualNode reports whether n is a virtual node of a base.
func isVirtualNode(n *corev1.Node) bool {
	return n.Labels[api.LabelComponent] == api.ComponentVNode
}

// fits reports whether a pod of the template would be placed on n by the
// scheduler's node filters that depend on the node alone: a schedulable
// virtual node, Ready or not, the template's nodeName, nodeSelector and
// required node affinity (the scheduler's NodeAffinity plugin, through the
// same helper the DaemonSet controller uses), and no NoSchedule or NoExecute
// taint left untolerated (the TaintToleration plugin). Pod (anti-)affinity
// and resources are not part of it: they depend on other pods, and with a
// hostname anti-affinity they are what spreads the replicas one per node.
func (m matcher) fits(n *corev1.Node) bool {
	// Readiness is not looked at: a NotReady node is a base the controller
	// lost contact with, not one that left. Scaling down on it would
	// uninstall modules because of a network blip; a base that is gone
	// loses its node after the removal window, and that scales down.
	if !isVirtualNode(n) || n.Spec.Unschedulable {
		return false
	}
	if name := m.template.Spec.NodeName; name != "" && name != n.Name {
		return false
	}
	// A template whose affinity does not parse cannot be scheduled anywhere.
	if ok, err := m.affinity.Match(n); err != nil || !ok {
		return false
	}
	// The comparison operators of tolerations are an alpha feature gate
	// (TaintTolerationComparisonOperators), off by default: evaluate as the
	// scheduler does with it off.
	_, untolerated := schedulingcorev1.FindMatchingUntoleratedTaint(logr.Discard(), n.Spec.Taints, m.tolerations, filterTaint, false)
	return !untolerated
}

// filterTaint selects the taints the scheduler filters on (NoSchedule and
// NoExecute), except those the node lifecycle controller derives from the
// Ready condition and spec.unschedulable, which fits reads directly: they
// lag behind by up to the controller's monitor period, and a joining base
// would otherwise count only seconds after it turned Ready, a fresh peer
// Deployment could even be scaled to zero and back.
func filterTaint(t *corev1.Taint) bool {
	switch t.Key {
	case corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable, corev1.TaintNodeUnschedulable:
		return false
	}
	return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
}

// fitting returns the names of the nodes the template fits.
func (m matcher) fitting(nodes []*corev1.Node) map[string]bool {
	out := map[string]bool{}
	for _, node := range nodes {
		if m.fits(node) {
			out[node.Name] = true
		}
	}
	return out
}
