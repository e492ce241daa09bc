// Package protocol implements the Koupleless arklet MQTT wire protocol spoken between Java
// bases and the controller: topic names and their parsing, base IDs and virtual node names,
// the {data, publishTimestamp} envelope of base→controller messages, the bare JSON bodies of
// controller→base commands, and the payload types with their validation. It only encodes and
// decodes; it holds no state and does no I/O. It imports the standard library only — nothing
// from k8s.io, MQTT clients, loggers or other project packages — so both the controller and a
// simulated base can use it.
//
// Receiving on the controller (subscribe to BaseSubscriptions(env) on every connect):
//
//	parts, err := protocol.ParseTopic(msg.Topic())
//	switch parts.Suffix {
//	case protocol.SuffixHeartbeat:
//		e, err := protocol.Decode[protocol.BaseStatus](msg.Payload())
//		// then CheckBaseID(parts.BaseID, e.Data.BaseMetadata.Identity) and
//		// e.Expired(now, protocol.DefaultMaxAge)
//	}
//
// Sending a command:
//
//	body, err := protocol.EncodeCommand(protocol.BizModel{BizName: n, BizVersion: v, BizURL: u})
//	topic := protocol.Topic(env, baseID, protocol.CommandInstallBiz)
//
// Every error wraps one of the Err… sentinels; Reason turns it into a metric label. The wire
// format is described in docs/protocol.md; testdata/ holds payloads a real base sends (see
// testdata/README.md) and drives the golden tests.
package protocol
