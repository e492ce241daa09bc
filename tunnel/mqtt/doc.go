// Package mqtt implements tunnel.Tunnel over MQTT with the Eclipse Paho client, speaking
// the Koupleless arklet protocol of pkg/protocol.
//
// One Tunnel serves every base of one env. It connects with a unique client ID and a clean
// session, and in paho's on-connect handler subscribes at QoS 1 to the wildcard topics
// koupleless_<env>/+/base/…, so every reconnect restores all subscriptions and there is no
// per-base state to lose. Each message is decoded by one generic path (size, JSON,
// validation, age, identity) into a typed tunnel.Event, or dropped with a debug log and a
// counter by reason. Commands are published at QoS 1 and never retained.
//
// It imports tunnel, pkg/protocol, paho, Prometheus and virtual-kubelet's log package only:
// never k8s.io, provider or pkg/controller. The embedded broker lives in pkg/broker.
//
// Usage:
//
//	t, err := mqtt.New(mqtt.Config{BrokerURL: "tcp://broker:1883", Env: "default"})
//	if err != nil { … }
//	go t.Run(ctx)          // connects, reconnects, returns nil when ctx is done
//	<-t.Ready()            // connected and subscribed once
//	for { select { case ev := <-t.Events(): …; case <-ctx.Done(): return } }
//	err = t.QueryHealth(ctx, baseID) // errors.Is(err, mqtt.ErrNotConnected): retry later
package mqtt
