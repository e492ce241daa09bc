package tunnel

import (
	"context"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Tunnel carries commands to bases and delivers what bases publish as Events.
//
// A Tunnel speaks base IDs and protocol types only. It listens to every base of
// its environment at once (wildcard subscriptions restored on every reconnect),
// so there is no per-base subscribe step: the consumer decides which bases it
// serves.
type Tunnel interface {
	// Run connects and delivers events until ctx is done or the tunnel fails
	// for good. Events are delivered on the channel returned by Events.
	Run(ctx context.Context) error
	// Ready is closed once the tunnel is connected and subscribed for the
	// first time.
	Ready() <-chan struct{}
	// Connected reports whether the tunnel is connected right now.
	Connected() bool
	// Events is the stream of everything bases publish, decoded and checked.
	Events() <-chan Event

	// InstallBiz asks a base to install one biz.
	InstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error
	// UninstallBiz asks a base to uninstall exactly biz.BizName:biz.BizVersion.
	UninstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error
	// QueryAllBiz asks a base for its full biz inventory (answered by BizStatus).
	QueryAllBiz(ctx context.Context, baseID string) error
	// QueryHealth asks a base for its health (answered by BaseHealth).
	QueryHealth(ctx context.Context, baseID string) error
	// SendBaseline sends a base the bizs it must run, which it installs as one
	// batch (answered by BatchInstallResult).
	SendBaseline(ctx context.Context, baseID string, bizs []protocol.BizModel) error
}

// Event is something a base published. The concrete types are BaseHeartbeat,
// BaseHealth, BizStatus, BizOperationResult, BatchInstallResult and
// BaselineQuery.
type Event interface {
	// Base is the ID of the base the event came from (the topic's identity).
	Base() string
	// Published is the base's publish time of the message.
	Published() time.Time
	isEvent()
}

// Header carries what every event has: the base ID and the publish time.
type Header struct {
	BaseID      string
	PublishedAt time.Time
}

// Base returns the ID of the base the event came from.
func (h Header) Base() string { return h.BaseID }

// Published returns the base's publish time of the message.
func (h Header) Published() time.Time { return h.PublishedAt }

func (Header) isEvent() {}

// BaseHeartbeat is a base's periodic heartbeat (topic base/heart).
type BaseHeartbeat struct {
	Header
	Status protocol.BaseStatus
}

// BaseHealth is a base's answer to a health query (topic base/health).
type BaseHealth struct {
	Header
	Health protocol.HealthReply
}

// BizStatus is a base's full biz inventory (topic base/simpleBiz).
type BizStatus struct {
	Header
	Bizs []protocol.SimpleBizInfo
}

// BizOperationResult is a base's answer to one install or uninstall (topic
// base/bizOperation).
type BizOperationResult struct {
	Header
	Operation protocol.BizOperation
}

// BatchInstallResult is a base's answer to a baseline (topic
// base/batchInstallBizResponse).
type BatchInstallResult struct {
	Header
	Result protocol.BatchInstallResult
}

// BaselineQuery is a base asking, after it connected for the first time, which
// bizs it should run (topic base/queryBaseline). The consumer answers through
// Tunnel.SendBaseline.
type BaselineQuery struct {
	Header
	Metadata protocol.BaseMetadata
}
