//go:build tools

// Package tools keeps kube-score's command in this module's graph so `go mod tidy` records it;
// test/audit/bench.ts builds it with `go build`.
package tools

import _ "github.com/zegl/kube-score/cmd/kube-score"
