// Package tunneltest provides an in-memory Tunnel that records commands and injects events, for provider and controller tests.
package tunneltest
