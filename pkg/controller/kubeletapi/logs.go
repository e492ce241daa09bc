package kubeletapi

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// containerLogs answers GET /containerLogs/{namespace}/{pod}/{container} for
// a module pod with its base Pod's log stream.
func (s *Server) containerLogs(ctx context.Context, namespace, podName, containerName string, opts vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	base, container, err := s.basePod(lctx, namespace, podName, containerName)
	cancel()
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithField("pod", namespace+"/"+podName).WithField("basePod", base.Namespace+"/"+base.Name).
		WithField("container", container).WithField("follow", opts.Follow).Debug("streaming the base pod's logs for a module pod")
	stream, err := s.cfg.Client.CoreV1().Pods(base.Namespace).GetLogs(base.Name, podLogOptions(container, opts)).Stream(ctx)
	if err != nil {
		return nil, apiError(fmt.Errorf("reading the logs of base pod %s/%s: %w", base.Namespace, base.Name, err), err)
	}
	return stream, nil
}

// podLogOptions turns the kubelet API's query into the pods/log options.
func podLogOptions(container string, o vkapi.ContainerLogOpts) *corev1.PodLogOptions {
	opts := &corev1.PodLogOptions{
		Container:  container,
		Follow:     o.Follow,
		Previous:   o.Previous,
		Timestamps: o.Timestamps,
	}
	if o.Tail > 0 {
		opts.TailLines = new(int64(o.Tail))
	}
	if o.LimitBytes > 0 {
		opts.LimitBytes = new(int64(o.LimitBytes))
	}
	if o.SinceSeconds > 0 {
		opts.SinceSeconds = new(int64(o.SinceSeconds))
	}
	if !o.SinceTime.IsZero() {
		opts.SinceTime = &metav1.Time{Time: o.SinceTime}
	}
	return opts
}

// basePod finds the Pod of the base that runs module pod namespace/name and
// the container of it whose logs to stream. What is wrong with the module
// pod itself is a 404; what is wrong with its base an unclassified error
// (500), logged here with its text: a 404 would read as "no such pod"
// through the API server, which hands on the status of a kubelet's error
// answer but not (as of 1.37) its text.
func (s *Server) basePod(ctx context.Context, namespace, name, container string) (*corev1.Pod, string, error) {
	pods := s.cfg.Client.CoreV1()
	pod, err := pods.Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, "", apiError(fmt.Errorf("reading pod %s/%s: %w", namespace, name, err), err)
	}
	env, _, virtual := protocol.BaseIDFromNodeName(pod.Spec.NodeName)
	if !virtual || env != protocol.NormalizeEnv(s.cfg.Env) {
		return nil, "", errdefs.NotFoundf("pod %s/%s is not a module pod on a virtual node of env %s", namespace, name, s.cfg.Env)
	}
	if !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == container }) {
		return nil, "", errdefs.NotFoundf("pod %s/%s has no container %q", namespace, name, container)
	}
	node, err := pods.Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, "", apiError(fmt.Errorf("reading node %s: %w", pod.Spec.NodeName, err), err)
	}
	ip := nodeInternalIP(node)
	if ip == "" {
		return nil, "", fmt.Errorf("virtual node %s shows no base IP yet: its base has not sent a heartbeat", node.Name)
	}
	candidates, err := s.podsWithIP(ctx, ip)
	if err != nil {
		return nil, "", fmt.Errorf("looking up the pod with the base's IP %s: %w", ip, err)
	}
	ref := pickBasePod(candidates, node.Labels[api.LabelBaseHostName])
	if ref == nil {
		return nil, "", fmt.Errorf("the base of virtual node %s (IP %s) is not a pod in this cluster: no running pod outside the virtual nodes has that IP; "+
			"a module's logs are in its base's own output, read them where the base runs", node.Name, ip)
	}
	// The cache keeps only the identity of pods on real nodes: read the
	// containers from the API server.
	base, err := pods.Pods(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, "", apiError(fmt.Errorf("reading base pod %s/%s: %w", ref.Namespace, ref.Name, err), err)
	}
	if base.UID != ref.UID || base.Status.PodIP != ip {
		return nil, "", fmt.Errorf("base pod %s/%s of virtual node %s changed while being looked up; try again", ref.Namespace, ref.Name, node.Name)
	}
	name, err = s.baseContainer(base)
	return base, name, err
}

// podsWithIP returns the pods that show ip, from the configured lookup or a
// LIST with a field selector.
func (s *Server) podsWithIP(ctx context.Context, ip string) ([]*corev1.Pod, error) {
	if s.cfg.BasePods != nil {
		return s.cfg.BasePods(ctx, ip)
	}
	list, err := s.cfg.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("status.podIP", ip).String(),
		ResourceVersion: "0", // from the API server's cache
	})
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(list.Items))
	for i := range list.Items {
		if list.Items[i].Status.PodIP == ip {
			pods = append(pods, &list.Items[i])
		}
	}
	return pods, nil
}

// pickBasePod returns the base's own Pod among the pods with its IP: bound
// to a real node (module pods carry their base's IP too, on virtual nodes)
// and running; the one named like the base's reported host name first
// (a pod's host name is its name unless spec.hostname says otherwise).
func pickBasePod(pods []*corev1.Pod, hostName string) *corev1.Pod {
	var found *corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if _, _, virtual := protocol.BaseIDFromNodeName(p.Spec.NodeName); virtual {
			continue
		}
		if hostName != "" && strings.EqualFold(p.Name, hostName) {
			return p
		}
		if found == nil {
			found = p
		}
	}
	return found
}

// baseContainer returns the base Pod's container to stream: the configured
// one, else the first.
func (s *Server) baseContainer(base *corev1.Pod) (string, error) {
	if len(base.Spec.Containers) == 0 {
		return "", fmt.Errorf("base pod %s/%s has no container", base.Namespace, base.Name)
	}
	want := s.cfg.BaseContainer
	if want == "" {
		return base.Spec.Containers[0].Name, nil
	}
	for _, c := range base.Spec.Containers {
		if c.Name == want {
			return want, nil
		}
	}
	return "", fmt.Errorf("base pod %s/%s has no container %q (--base-container)", base.Namespace, base.Name, want)
}

// nodeInternalIP returns the node's first InternalIP: the base's IP.
func nodeInternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// apiError classifies err (wrapped as wrapped) for virtual-kubelet's
// handlers, which turn not-found and invalid-input errors into 404 and 400.
func apiError(wrapped, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return errdefs.AsNotFound(wrapped)
	case apierrors.IsBadRequest(err), apierrors.IsInvalid(err):
		return errdefs.AsInvalidInput(wrapped)
	default:
		return wrapped
	}
}
