//go:build tools

// Package tools keeps Prometheus's commands in this module's graph so `go mod tidy` records
// them; test/cluster/build.ts builds each with `go build`.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
