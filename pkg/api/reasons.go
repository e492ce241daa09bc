package api

// EnvBizVersion is the container environment variable holding the biz version.
const EnvBizVersion = "BIZ_VERSION"

// Container state reasons and pod Event reasons, as `kubectl describe pod`
// shows them.
const (
	ReasonBizInstalling    = "BizInstalling"
	ReasonBizInstalled     = "BizInstalled"
	ReasonBizInstallFailed = "BizInstallFailed"
	ReasonBizBroken        = "BizBroken"
	// ReasonBizInactive (value BizDeactivated) is a waiting container's
	// reason while the base reports the biz DEACTIVATED and no other version
	// of it is active there: installed, not serving; the pod stays Pending.
	ReasonBizInactive = "BizDeactivated"
	// ReasonBizSuperseded (value BizDeactivate, the reference controller's)
	// marks a pod whose biz the base deactivated because another version of
	// the same name became active there: the container terminates, the pod
	// turns Failed with this reason and a Warning Event; batch updates key
	// on it.
	ReasonBizSuperseded     = "BizDeactivate"
	ReasonBizStopped        = "BizStopped"
	ReasonBizUninstalled    = "BizUninstalled"
	ReasonBizUninstalling   = "BizUninstalling"
	ReasonBizOwnedElsewhere = "BizOwnedByOtherPod"
	ReasonInvalidBiz        = "InvalidBizSpec"
	ReasonWaitingForBase    = "WaitingForBase"
	ReasonOrphanBiz         = "OrphanBiz"
)

// Node condition reasons, written so that `kubectl describe node` explains
// itself.
const (
	ReasonBaseReady       = "BaseReady"
	ReasonBaseUnreachable = "BaseUnreachable"
	ReasonBaseAdopted     = "BaseAdopted"
	// ReasonTunnelDisrupted: the controller lost the tunnel to (most of) its
	// bases, so a base's silence says nothing about the base; its node keeps
	// its last known state and nothing is evicted or removed.
	ReasonTunnelDisrupted = "TunnelDisrupted"
	// ReasonTunnelRestored: the tunnel is back and the base has a full
	// heartbeat window to show a sign of life.
	ReasonTunnelRestored    = "TunnelRestored"
	ReasonSufficientMemory  = "BaseHasSufficientMetaspace"
	ReasonMetaspacePressure = "BaseMetaspacePressure"
	ReasonNoDiskPressure    = "BaseHasNoDiskPressure"
	ReasonNoPIDPressure     = "BaseHasSufficientPID"
	ReasonNetworkAvailable  = "BaseTunnelConnected"
)

// Node Event reasons of the controller's base lifecycle, as `kubectl
// describe node` shows them.
const (
	// ReasonBaseRegistered: a virtual node now serves the base.
	ReasonBaseRegistered = "BaseRegistered"
	// ReasonBaseReachable: a base marked unreachable is heard from again.
	ReasonBaseReachable = "BaseReachable"
	// ReasonDuplicateBaseIdentity: two bases announce one identity.
	ReasonDuplicateBaseIdentity = "DuplicateBaseIdentity"
	// ReasonNodeRegistrationFailed: the base's Node could not be written.
	ReasonNodeRegistrationFailed = "NodeRegistrationFailed"
)
