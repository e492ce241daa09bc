// Package tunnel defines the transport between the controller and bases: the Tunnel interface and the typed events it delivers. It holds no transport code.
//
// Mux combines several transports (MQTT and HTTP) into one Tunnel: it merges their events
// and routes every command to the transport that serves the base, so the consumer never
// knows which transport a base uses. A base seen on two transports is served once, by the
// first that announced it, until it has been silent there for MuxConfig.SilentAfter.
package tunnel
