package provider

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// metaspacePressurePercent is the metaspace use that turns a node's
// MemoryPressure condition on.
const metaspacePressurePercent = 90

// NodeConfig is what does not change during a virtual node's life.
type NodeConfig struct {
	// Env is the tunnel environment (already normalized).
	Env string
	// BaseID is the base identity from the MQTT topic.
	BaseID string
	// ControllerVersion is reported as the node's kubelet version.
	ControllerVersion string
	// MaxPods is the node's pod capacity.
	MaxPods int
	// Arch is the kubernetes.io/arch label and nodeInfo architecture.
	Arch string
	// EnvTaint adds the reference controller's node-env taint.
	EnvTaint bool
	// KubeletAddress and KubeletPort, when both are set, advertise the
	// controller's kubelet API as the node's: the API server dials the
	// node's Hostname address (first in its default
	// --kubelet-preferred-address-types) and status.daemonEndpoints'
	// kubelet port for `kubectl logs`. The base's own IP stays the node's
	// InternalIP; its host name moves to the base host-name label only.
	KubeletAddress string
	KubeletPort    int32
}

// NodeName returns the name of the node for c's base.
func (c NodeConfig) NodeName() string { return protocol.NodeName(c.Env, c.BaseID) }

// BaseInfo is what the controller has learnt about a base at run time.
type BaseInfo struct {
	// Status is the latest heartbeat.
	Status protocol.BaseStatus
	// JVM holds the latest health figures, if a health reply arrived.
	JVM *protocol.JVMInfo
	// CPUCount is the number of processors the base's last health reply
	// reported; 0 until one arrives.
	CPUCount int
	// Zone and Region are copied from the real Node hosting the base's Pod,
	// when the base runs in the cluster.
	Zone, Region string
}

// Readiness is the controller's judgement of a base's liveness.
type Readiness struct {
	// Reachable is false once the base missed its heartbeat window: its
	// node turns Ready=Unknown and its pods stop being Ready. While true the
	// node shows the base's last known state.
	Reachable bool
	// Waiting holds commands back until the base's next sign of life: after
	// a controller restart, while the tunnel is disrupted and right after it
	// returns (a restarted broker drops commands for bases that have not
	// reconnected yet).
	Waiting bool
	// Reason and Message explain the Ready condition.
	Reason, Message string
}

// nodeLabels returns the labels of a virtual node.
func nodeLabels(cfg NodeConfig, info BaseInfo) map[string]string {
	md := info.Status.BaseMetadata
	labels := map[string]string{
		api.LabelComponent:     api.ComponentVNode,
		api.LabelEnv:           cfg.Env,
		api.LabelType:          api.TypeVirtualKubelet,
		api.LabelBaseStack:     api.StackJava,
		corev1.LabelHostname:   cfg.NodeName(),
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: cfg.Arch,
	}
	setIfValid(labels, api.LabelBaseName, md.Name)
	setIfValid(labels, api.LabelBaseVersion, md.Version)
	setIfValid(labels, api.LabelBaseClusterName, md.ClusterName)
	setIfValid(labels, api.LabelBaseHostName, info.Status.LocalHostName)
	if info.Status.Port != 0 {
		labels[api.LabelBaseTunnelPort] = strconv.Itoa(info.Status.Port)
	}
	setIfValid(labels, corev1.LabelTopologyZone, info.Zone)
	setIfValid(labels, corev1.LabelTopologyRegion, info.Region)
	return labels
}

// setIfValid sets a label only when the value is a valid label value, so one
// odd heartbeat field cannot make the whole node invalid.
func setIfValid(labels map[string]string, key, value string) {
	if value != "" && validLabelValue(value) {
		labels[key] = value
	}
}

// nodeTaints returns the taints of a virtual node.
func nodeTaints(cfg NodeConfig) []corev1.Taint {
	taints := []corev1.Taint{{
		Key:    api.TaintVirtualNode,
		Value:  api.TaintVirtualNodeValue,
		Effect: corev1.TaintEffectNoExecute,
	}}
	if cfg.EnvTaint {
		taints = append(taints, corev1.Taint{Key: api.TaintNodeEnv, Value: cfg.Env, Effect: corev1.TaintEffectNoExecute})
	}
	return taints
}

// nodeCapacity returns capacity and allocatable: pods from the configuration,
// CPU from the processor count of the base's health reply (modules share the
// base's processors), memory from the JVM's metaspace when the base reports a
// limit.
func nodeCapacity(cfg NodeConfig, info BaseInfo) (capacity, allocatable corev1.ResourceList) {
	pods := resource.NewQuantity(int64(cfg.MaxPods), resource.DecimalSI)
	capacity = corev1.ResourceList{corev1.ResourcePods: *pods}
	allocatable = corev1.ResourceList{corev1.ResourcePods: *pods}
	if info.CPUCount > 0 {
		cpu := resource.NewQuantity(int64(info.CPUCount), resource.DecimalSI)
		capacity[corev1.ResourceCPU] = *cpu
		allocatable[corev1.ResourceCPU] = *cpu
	}
	jvm := info.JVM
	if jvm == nil {
		return capacity, allocatable
	}
	if c, ok := jvm.MetaspaceCapacity(); ok {
		capacity[corev1.ResourceMemory] = *resource.NewQuantity(c, resource.BinarySI)
		allocatable[corev1.ResourceMemory] = *resource.NewQuantity(c, resource.BinarySI)
	}
	if a, ok := jvm.MetaspaceAllocatable(); ok {
		allocatable[corev1.ResourceMemory] = *resource.NewQuantity(a, resource.BinarySI)
	}
	return capacity, allocatable
}

// metaspacePressure reports whether the base's metaspace is nearly full.
func metaspacePressure(jvm *protocol.JVMInfo) bool {
	if jvm == nil {
		return false
	}
	c, ok := jvm.MetaspaceCapacity()
	return ok && jvm.JavaUsedMetaspace*100 >= c*metaspacePressurePercent
}

// nodeConditions returns the conditions for the given judgement, keeping the
// transition time of every condition whose status did not change.
func nodeConditions(prev []corev1.NodeCondition, info BaseInfo, r Readiness, now time.Time) []corev1.NodeCondition {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: r.Reason, Message: r.Message}
	if !r.Reachable {
		ready.Status = corev1.ConditionUnknown
	}
	memory := corev1.NodeCondition{
		Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse,
		Reason: api.ReasonSufficientMemory, Message: "base metaspace has room for more modules",
	}
	if metaspacePressure(info.JVM) {
		memory.Status = corev1.ConditionTrue
		memory.Reason = api.ReasonMetaspacePressure
		memory.Message = "base metaspace is over " + strconv.Itoa(metaspacePressurePercent) + "% used"
	}
	conds := []corev1.NodeCondition{
		ready,
		memory,
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: api.ReasonNoDiskPressure, Message: "modules use no node disk"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: api.ReasonNoPIDPressure, Message: "modules run inside the base process"},
		{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: api.ReasonNetworkAvailable, Message: "base is reached through the MQTT tunnel"},
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = metav1.NewTime(now)
		conds[i].LastTransitionTime = metav1.NewTime(now)
		for _, p := range prev {
			if p.Type == conds[i].Type && p.Status == conds[i].Status {
				conds[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	return conds
}

// buildNode returns the desired virtual node. prev, if not nil, is the node
// built last time, whose condition transition times are kept.
func buildNode(cfg NodeConfig, info BaseInfo, r Readiness, prev *corev1.Node, now time.Time) *corev1.Node {
	var prevConds []corev1.NodeCondition
	if prev != nil {
		prevConds = prev.Status.Conditions
	}
	capacity, allocatable := nodeCapacity(cfg, info)
	addresses := []corev1.NodeAddress{}
	if ip := info.Status.LocalIP; ip != "" {
		addresses = append(addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	var endpoints corev1.NodeDaemonEndpoints
	if cfg.KubeletAddress != "" && cfg.KubeletPort > 0 {
		addresses = append(addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: cfg.KubeletAddress})
		endpoints.KubeletEndpoint.Port = cfg.KubeletPort
	} else if host := info.Status.LocalHostName; host != "" {
		addresses = append(addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: host})
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   cfg.NodeName(),
			Labels: nodeLabels(cfg, info),
		},
		Spec: corev1.NodeSpec{Taints: nodeTaints(cfg)},
		Status: corev1.NodeStatus{
			Phase:           corev1.NodeRunning,
			Capacity:        capacity,
			Allocatable:     allocatable,
			Conditions:      nodeConditions(prevConds, info, r, now),
			Addresses:       addresses,
			DaemonEndpoints: endpoints,
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:  cfg.ControllerVersion,
				OperatingSystem: "linux",
				Architecture:    cfg.Arch,
				MachineID:       cfg.BaseID,
			},
		},
	}
}

// nodeChanged reports whether b differs from a in anything but condition
// heartbeat times, that is whether an API write is worth it.
func nodeChanged(a, b *corev1.Node) bool {
	if a == nil || b == nil {
		return a != b
	}
	strip := func(n *corev1.Node) *corev1.Node {
		c := n.DeepCopy()
		for i := range c.Status.Conditions {
			c.Status.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		return c
	}
	return !equality.Semantic.DeepEqual(strip(a), strip(b))
}
