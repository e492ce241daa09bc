package mqtt

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/virtual-kubelet/virtual-kubelet/log"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// Errors of this package that handlers return; their metric labels are in metrics.go.
var (
	errStale    = errors.New("message too old")
	errWrongEnv = errors.New("topic of another env")
	errLegacy   = errors.New("legacy base/biz inventory not supported")
	errStopped  = errors.New("tunnel stopped")
)

// handler turns the payload of one topic suffix into an event. baseID is the topic's
// identity, already validated.
type handler func(t *Tunnel, baseID string, payload []byte) (tunnel.Event, error)

// Whether a handler applies Config.MaxMessageAge.
const (
	checkAge = true
	anyAge   = false
)

// handlers routes every base→controller suffix to its handler.
//
// Age: heartbeats, baseline queries, health replies and inventories describe the base's
// state at publish time, so an old one (a broker backlog, a clock far off) would report a
// state that no longer holds; they are dropped as the reference does. bizOperation and
// batchInstallBizResponse answer commands this controller sent: each is the only report of
// that command's outcome and is never repeated, so dropping a late one would leave the
// command unanswered for good, while applying it late is still correct.
//
// Identity: heartbeats and baseline queries carry the base's identity; it must equal the
// topic's, or the message is a spoof or a misconfigured base and is dropped.
var handlers = map[string]handler{
	protocol.SuffixHeartbeat: on(checkAge,
		func(s protocol.BaseStatus) string { return s.BaseMetadata.Identity },
		func(h tunnel.Header, s protocol.BaseStatus) tunnel.Event {
			return tunnel.BaseHeartbeat{Header: h, Status: s}
		}),
	protocol.SuffixQueryBaseline: on(checkAge,
		func(m protocol.BaseMetadata) string { return m.Identity },
		func(h tunnel.Header, m protocol.BaseMetadata) tunnel.Event {
			return tunnel.BaselineQuery{Header: h, Metadata: m}
		}),
	protocol.SuffixHealth: on(checkAge, nil,
		func(h tunnel.Header, r protocol.HealthReply) tunnel.Event {
			return tunnel.BaseHealth{Header: h, Health: r}
		}),
	protocol.SuffixSimpleBiz: on(checkAge, nil,
		func(h tunnel.Header, bizs []protocol.SimpleBizInfo) tunnel.Event {
			return tunnel.BizStatus{Header: h, Bizs: bizs}
		}),
	protocol.SuffixBizOperation: on(anyAge, nil,
		func(h tunnel.Header, op protocol.BizOperation) tunnel.Event {
			return tunnel.BizOperationResult{Header: h, Operation: op}
		}),
	protocol.SuffixBatchInstallResponse: on(anyAge, nil,
		func(h tunnel.Header, r protocol.BatchInstallResult) tunnel.Event {
			return tunnel.BatchInstallResult{Header: h, Result: r}
		}),
	// The legacy inventory (runtime <= v1.3.1) is counted and dropped: such a base also
	// sends the pre-v1.3.3 heartbeat, which has no baseMetadata.identity and is dropped
	// as missing_field, so it never gets a node an inventory could apply to. The counter
	// makes these bases visible instead.
	protocol.SuffixLegacyBiz: func(*Tunnel, string, []byte) (tunnel.Event, error) {
		return nil, errLegacy
	},
}

// baseSuffixes returns the suffixes with a handler, sorted.
func baseSuffixes() []string {
	s := make([]string, 0, len(handlers))
	for k := range handlers {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// on builds the handler of a payload type T: decode and validate (protocol.Decode), drop if
// too old (when age is checkAge), drop if identity is set and differs from the topic's base
// ID, then build the event.
func on[T any](age bool, identity func(T) string, event func(tunnel.Header, T) tunnel.Event) handler {
	return func(t *Tunnel, baseID string, payload []byte) (tunnel.Event, error) {
		env, err := protocol.Decode[T](payload)
		if err != nil {
			return nil, err
		}
		if age && env.Expired(t.cfg.Now(), t.cfg.MaxMessageAge) {
			return nil, fmt.Errorf("%w: published %s, limit %s", errStale, env.PublishedAt(), t.cfg.MaxMessageAge)
		}
		if identity != nil {
			if err := protocol.CheckBaseID(baseID, identity(env.Data)); err != nil {
				return nil, err
			}
		}
		return event(tunnel.Header{BaseID: baseID, PublishedAt: env.PublishedAt()}, env.Data), nil
	}
}

// onMessage is the paho callback of every subscription. paho calls it for one message at a
// time, in arrival order, so events keep that order. Every message ends either as one event
// or as one drop (debug log + counter); a panic is recovered and counted.
func (t *Tunnel) onMessage(_ paho.Client, m paho.Message) {
	topic, base := m.Topic(), ""
	defer func() {
		if r := recover(); r != nil {
			t.metrics.dropped.WithLabelValues(reasonPanic).Inc()
			t.log.WithFields(log.Fields{"topic": topic, "base": base, "reason": reasonPanic, "panic": r}).
				Error("recovered from panic while handling mqtt message")
		}
	}()
	t.metrics.received.WithLabelValues(suffixLabel(topic)).Inc()
	parts, err := protocol.ParseTopic(topic)
	if err == nil {
		base = parts.BaseID
		err = t.route(parts, m.Payload())
	}
	if err != nil {
		r := reason(err)
		t.metrics.dropped.WithLabelValues(r).Inc()
		t.log.WithFields(log.Fields{"topic": topic, "base": base, "reason": r}).WithError(err).
			Debug("dropped mqtt message")
	}
}

// route runs the handler of a parsed topic and delivers the event.
func (t *Tunnel) route(parts protocol.TopicParts, payload []byte) error {
	h, ok := handlers[parts.Suffix]
	if !ok {
		return fmt.Errorf("%w: %q is not a base topic", protocol.ErrUnknownTopic, parts.Suffix)
	}
	if parts.Env != t.cfg.Env {
		return fmt.Errorf("%w: %q, serving %q", errWrongEnv, parts.Env, t.cfg.Env)
	}
	// Before decoding: a payload over its topic's cap costs no JSON parsing.
	if limit := t.cfg.MaxMessageBytes[parts.Suffix]; len(payload) > limit {
		return fmt.Errorf("%w: %d bytes on %s, limit %d", protocol.ErrTooLarge, len(payload), parts.Suffix, limit)
	}
	ev, err := h(t, parts.BaseID, payload)
	if err != nil {
		return err
	}
	return t.deliver(ev)
}

// suffixLabel returns the received_total label of a topic: its suffix if that is a base
// topic (even when the rest of the topic is invalid), else unknownSuffix. The label set
// stays bounded whatever is published.
func suffixLabel(topic string) string {
	levels := strings.SplitN(topic, "/", 3)
	if len(levels) == 3 {
		if _, ok := handlers[levels[2]]; ok {
			return levels[2]
		}
	}
	return unknownSuffix
}

// deliver sends ev to Events, waiting for room as long as the tunnel runs, so that paho's
// in-order delivery carries through to the consumer. It gives up with errStopped once the
// tunnel stops.
func (t *Tunnel) deliver(ev tunnel.Event) error {
	select {
	case <-t.stopping:
		return errStopped
	case t.events <- ev:
		return nil
	default:
	}
	t.metrics.backpressure.Inc()
	select {
	case t.events <- ev:
		return nil
	case <-t.stopping:
		return errStopped
	}
}
