// Package tunnel defines the transport between the controller and bases: the Tunnel interface and the typed events it delivers. It holds no transport code.
package tunnel
