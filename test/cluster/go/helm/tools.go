//go:build tools

// Package tools keeps Helm's command in this module's graph so `go mod tidy` records it;
// test/cluster/build.ts builds it with `go build`.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
