package api

// Kubernetes label, taint and annotation keys set on virtual nodes and read
// from module pods. The values match the Koupleless reference controller so
// existing workloads and selectors keep working.
const (
	// LabelComponent marks objects managed by the controller; virtual nodes
	// carry ComponentVNode.
	LabelComponent = "virtual-kubelet.koupleless.io/component"
	// ComponentVNode is the LabelComponent value of a virtual node.
	ComponentVNode = "vnode"
	// LabelEnv is the tunnel environment a virtual node belongs to.
	LabelEnv = "virtual-kubelet.koupleless.io/env"

	// LabelBaseName is the base's application name (heartbeat baseMetadata.name).
	LabelBaseName = "base.koupleless.io/name"
	// LabelBaseVersion is the base's version (baseMetadata.version).
	LabelBaseVersion = "base.koupleless.io/version"
	// LabelBaseClusterName is the base's cluster (baseMetadata.clusterName).
	LabelBaseClusterName = "base.koupleless.io/cluster-name"
	// LabelBaseHostName is the host name the base reports.
	LabelBaseHostName = "base.koupleless.io/host-name"
	// LabelBaseStack is the runtime stack of the base; always StackJava.
	LabelBaseStack = "base.koupleless.io/stack"
	// StackJava is the LabelBaseStack value of a Koupleless Java base.
	StackJava = "java"
	// LabelBaseTunnelPort is the base's tunnel port, set only when non-zero.
	LabelBaseTunnelPort = "base.koupleless.io/tunnel-port"

	// LabelType marks virtual-kubelet nodes, as upstream virtual-kubelet does.
	LabelType = "type"
	// TypeVirtualKubelet is the LabelType value of a virtual node.
	TypeVirtualKubelet = "virtual-kubelet"

	// TaintVirtualNode keeps ordinary pods off virtual nodes; module pods
	// tolerate it.
	TaintVirtualNode = "schedule.koupleless.io/virtual-node"
	// TaintVirtualNodeValue is the value of TaintVirtualNode.
	TaintVirtualNodeValue = "True"
	// TaintNodeEnv is the reference controller's optional per-env taint.
	TaintNodeEnv = "schedule.koupleless.io/node-env"
)

// Labels on module Deployments read by the peer replica sync
// (pkg/controller/peersync).
const (
	// LabelStrategy selects a deployment strategy; StrategyPeer asks for one
	// replica per schedulable virtual node (Ready or not) the pod template
	// can be scheduled onto.
	LabelStrategy = "virtual-kubelet.koupleless.io/strategy"
	// StrategyPeer is the LabelStrategy value of a peer Deployment.
	StrategyPeer = "peer"
	// LabelReplicasControl set to ReplicasControlDisabled stops the peer
	// replica sync for one Deployment.
	LabelReplicasControl = "virtual-kubelet.koupleless.io/replicas-control"
	// ReplicasControlDisabled is the LabelReplicasControl opt-out value.
	ReplicasControlDisabled = "disabled"
)
