package peersync

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func TestFits(t *testing.T) {
	affinity := func(reqs ...corev1.NodeSelectorRequirement) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: reqs}},
			},
		}}
	}
	in := func(key string, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
	}
	cases := []struct {
		name     string
		node     *corev1.Node
		template func(*corev1.PodTemplateSpec)
		want     bool
	}{
		{name: "ready vnode, the guide's template", node: vnode("a", nil), want: true},
		{name: "not ready: a base out of contact still counts", node: vnode("a", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }), want: true},
		{name: "ready unknown", node: vnode("a", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }), want: true},
		{name: "no conditions yet", node: vnode("a", func(n *corev1.Node) { n.Status.Conditions = nil }), want: true},
		{name: "cordoned", node: vnode("a", func(n *corev1.Node) { n.Spec.Unschedulable = true })},
		{name: "not a virtual node", node: vnode("a", func(n *corev1.Node) { delete(n.Labels, "virtual-kubelet.koupleless.io/component") })},
		{name: "base version not selected", node: vnode("a", func(n *corev1.Node) { n.Labels["base.koupleless.io/version"] = "2.0.0" })},
		{name: "base name not selected", node: vnode("a", func(n *corev1.Node) { n.Labels["base.koupleless.io/name"] = "other" })},
		{
			name: "NotIn excludes", node: vnode("a", nil), template: func(p *corev1.PodTemplateSpec) {
				p.Spec.Affinity = affinity(corev1.NodeSelectorRequirement{Key: "base.koupleless.io/version", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"1.0.0"}})
			},
		},
		{
			name: "second term matches (terms are ORed)", node: vnode("a", func(n *corev1.Node) { n.Labels["base.koupleless.io/version"] = "2.0.0" }), want: true,
			template: func(p *corev1.PodTemplateSpec) {
				p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = append(
					p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms,
					corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{in("base.koupleless.io/version", "2.0.0")}})
			},
		},
		{
			name: "matchFields on the node name", node: vnode("a", nil), want: true, template: func(p *corev1.PodTemplateSpec) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{in("metadata.name", "vnode.a.default")}}},
				}}}
			},
		},
		{
			name: "nodeSelector matches", node: vnode("a", nil), want: true,
			template: func(p *corev1.PodTemplateSpec) {
				p.Spec.NodeSelector = map[string]string{"base.koupleless.io/cluster-name": "c1"}
			},
		},
		{
			name: "nodeSelector does not match", node: vnode("a", nil),
			template: func(p *corev1.PodTemplateSpec) {
				p.Spec.NodeSelector = map[string]string{"base.koupleless.io/cluster-name": "c2"}
			},
		},
		{
			name: "nodeSelector and affinity must both hold", node: vnode("a", func(n *corev1.Node) { n.Labels["base.koupleless.io/stack"] = "go" }),
			template: func(p *corev1.PodTemplateSpec) {
				p.Spec.NodeSelector = map[string]string{"base.koupleless.io/cluster-name": "c1"}
			},
		},
		{
			name: "unparsable affinity fits nowhere", node: vnode("a", nil), template: func(p *corev1.PodTemplateSpec) {
				p.Spec.Affinity = affinity(corev1.NodeSelectorRequirement{Key: "base.koupleless.io/version", Operator: corev1.NodeSelectorOpGt, Values: []string{"x"}})
			},
		},
		{name: "virtual-node taint not tolerated", node: vnode("a", nil), template: func(p *corev1.PodTemplateSpec) { p.Spec.Tolerations = nil }},
		{
			name: "Exists toleration tolerates the virtual-node taint", node: vnode("a", nil), want: true, template: func(p *corev1.PodTemplateSpec) {
				p.Spec.Tolerations = []corev1.Toleration{{Key: "schedule.koupleless.io/virtual-node", Operator: corev1.TolerationOpExists}}
			},
		},
		{
			name: "extra NoSchedule taint not tolerated", node: vnode("a", func(n *corev1.Node) {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "maintenance", Value: "true", Effect: corev1.TaintEffectNoSchedule})
			}),
		},
		{
			name: "env taint tolerated", want: true, node: vnode("a", func(n *corev1.Node) {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "schedule.koupleless.io/node-env", Value: "default", Effect: corev1.TaintEffectNoExecute})
			}), template: func(p *corev1.PodTemplateSpec) {
				p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "schedule.koupleless.io/node-env", Operator: corev1.TolerationOpEqual, Value: "default", Effect: corev1.TaintEffectNoExecute})
			},
		},
		{
			name: "PreferNoSchedule does not filter", want: true, node: vnode("a", func(n *corev1.Node) {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "busy", Effect: corev1.TaintEffectPreferNoSchedule})
			}),
		},
		{
			name: "lagging not-ready taint on a Ready node", want: true, node: vnode("a", func(n *corev1.Node) {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule})
			}),
		},
		{
			name: "unreachable taint on a node Ready again", want: true, node: vnode("a", func(n *corev1.Node) {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute})
			}),
		},
		{name: "template pinned to this node", node: vnode("a", nil), want: true, template: func(p *corev1.PodTemplateSpec) { p.Spec.NodeName = "vnode.a.default" }},
		{name: "template pinned to another node", node: vnode("a", nil), template: func(p *corev1.PodTemplateSpec) { p.Spec.NodeName = "vnode.b.default" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := guideTemplate("1.0.0")
			if tc.template != nil {
				tc.template(&tmpl)
			}
			require.Equal(t, tc.want, newMatcher(&tmpl).fits(tc.node))
		})
	}
}
