package mqtt

import (
	"context"
	"errors"
	"fmt"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/virtual-kubelet/virtual-kubelet/log"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// publishQoS is the QoS of every command. Commands are never retained: a retained command
// is replayed by the broker to the base on every reconnect or restart, re-running stale
// installs, uninstalls and baselines, as the reference controller does (docs/protocol.md,
// "Retained commands").
const (
	publishQoS      = 1
	publishRetained = false
)

// commandLabels are the command label values of commands_published_total.
var commandLabels = []string{
	protocol.CommandInstallBiz, protocol.CommandUninstallBiz, protocol.CommandQueryAllBiz,
	protocol.CommandHealth, baselineLabel,
}

// baselineLabel is the command label of SendBaseline (its topic suffix has a slash).
const baselineLabel = "baseline"

// InstallBiz publishes biz to the base's installBiz topic and waits for the broker's
// acknowledgement. The base answers with a BizOperationResult event. It returns an error
// wrapping ErrNotConnected when not connected, and ctx's error if ctx ends first (the
// command may still reach the base).
func (t *Tunnel) InstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	return t.publish(ctx, baseID, protocol.CommandInstallBiz, protocol.CommandInstallBiz, biz)
}

// UninstallBiz publishes biz to the base's uninstallBiz topic, like InstallBiz. The base
// uninstalls exactly biz.BizName:biz.BizVersion and answers with a BizOperationResult.
func (t *Tunnel) UninstallBiz(ctx context.Context, baseID string, biz protocol.BizModel) error {
	return t.publish(ctx, baseID, protocol.CommandUninstallBiz, protocol.CommandUninstallBiz, biz)
}

// QueryAllBiz publishes {} to the base's queryAllBiz topic, like InstallBiz. The base
// answers with a BizStatus event.
func (t *Tunnel) QueryAllBiz(ctx context.Context, baseID string) error {
	return t.publish(ctx, baseID, protocol.CommandQueryAllBiz, protocol.CommandQueryAllBiz, protocol.EmptyRequest{})
}

// QueryHealth publishes {} to the base's health topic, like InstallBiz. The base answers
// with a BaseHealth event.
func (t *Tunnel) QueryHealth(ctx context.Context, baseID string) error {
	return t.publish(ctx, baseID, protocol.CommandHealth, protocol.CommandHealth, protocol.EmptyRequest{})
}

// SendBaseline publishes bizs as a bare JSON array ([] if empty) to the base's
// base/baseline topic, like InstallBiz. The base installs them as one batch and answers
// with a BatchInstallResult event.
func (t *Tunnel) SendBaseline(ctx context.Context, baseID string, bizs []protocol.BizModel) error {
	if bizs == nil {
		bizs = []protocol.BizModel{}
	}
	return t.publish(ctx, baseID, protocol.SuffixBaseline, baselineLabel, bizs)
}

// publish encodes body, publishes it to the base's suffix topic at QoS 1 without retain,
// and waits for the PUBACK or ctx.
func (t *Tunnel) publish(ctx context.Context, baseID, suffix, label string, body any) (err error) {
	result := resultError
	defer func() { t.metrics.commands.WithLabelValues(label, result).Inc() }()

	if err := protocol.ValidateBaseID(baseID); err != nil {
		result = resultInvalid
		return fmt.Errorf("%s: %w", label, err)
	}
	payload, err := protocol.EncodeCommand(body)
	if err != nil {
		result = resultInvalid
		return fmt.Errorf("%s to base %s: %w", label, baseID, err)
	}
	// paho would queue a publish while reconnecting and send it whenever the connection
	// returns, possibly long after the caller gave up; refuse instead, so the caller
	// decides whether the command still makes sense.
	if err := ctx.Err(); err != nil {
		result = resultCanceled // the caller gave up: do not send a command nobody waits for
		return fmt.Errorf("%s to base %s: %w", label, baseID, err)
	}
	if !t.client.IsConnectionOpen() {
		result = resultNotConnected
		return fmt.Errorf("%s to base %s: %w", label, baseID, ErrNotConnected)
	}
	topic := protocol.Topic(t.cfg.Env, baseID, suffix)
	tok := t.client.Publish(topic, publishQoS, publishRetained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); errors.Is(err, paho.ErrNotConnected) {
			result = resultNotConnected // the connection dropped since the check above
			return fmt.Errorf("%s to base %s: %w", label, baseID, ErrNotConnected)
		} else if err != nil {
			return fmt.Errorf("%s to base %s: %w", label, baseID, err)
		}
	case <-ctx.Done():
		result = resultCanceled
		return fmt.Errorf("%s to base %s: waiting for acknowledgement: %w", label, baseID, ctx.Err())
	}
	result = resultOK
	l := log.G(ctx).WithFields(log.Fields{"base": baseID, "command": label, "topic": topic})
	switch suffix {
	case protocol.CommandHealth, protocol.CommandQueryAllBiz:
		l.Debug("mqtt command sent") // periodic polls: per-message traffic
	default:
		l.Info("mqtt command sent")
	}
	return nil
}
