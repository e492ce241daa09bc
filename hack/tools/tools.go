//go:build tools

// Package tools records the developer tools this module pins: golangci-lint,
// built by hack/build-tools.sh into .cache/tools/bin for `make lint`.
package tools

import (
	_ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
)
