// Package version holds build information stamped in with -ldflags.
package version

// Version is the release of this build, set with
// -ldflags "-X github.com/moduleops/module-controller/pkg/version.Version=v1.2.3".
var Version = "v0.0.0-dev"

// Commit is the source revision of this build, set the same way.
var Commit = "unknown"
