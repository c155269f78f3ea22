//go:build tools

// Package tools keeps the registry command in this module's graph so `go mod tidy` records it;
// build.ts builds it with `go build`.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
