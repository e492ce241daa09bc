// Package mqtt implements tunnel.Tunnel over MQTT with the Eclipse Paho client, and can serve an embedded broker.
package mqtt
