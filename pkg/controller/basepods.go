package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

// PodsWithIP returns the pods bound to a node that show ip, from the shared
// pod cache, once it synced. Pods not on a virtual node of this env carry
// only their identity, node name, phase and pod IP. The kubelet API uses it
// to find a base's own Pod without a LIST of every pod per request.
func (c *Controller) PodsWithIP(ctx context.Context, ip string) ([]*corev1.Pod, error) {
	if !c.pods.waitForSync(ctx) {
		return nil, ctx.Err()
	}
	return c.pods.withPodIP(ip)
}
