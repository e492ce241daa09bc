// Package controller orchestrates the process: it consumes tunnel events and keeps one virtual node, with its pod controller, per live base.
package controller
