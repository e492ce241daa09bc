// Package tunneltest provides an in-memory Tunnel for provider and controller
// tests: it records the commands it is asked to send, injects events as if a
// base had published them, and lets a test wait for a command (WaitFor,
// WaitForCommands, Sent) instead of polling for it.
package tunneltest
