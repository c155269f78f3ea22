//go:build tools

// Package tools keeps kwok's command in this module's graph so `go mod tidy` records it.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
