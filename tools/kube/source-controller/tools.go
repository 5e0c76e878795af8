//go:build tools

// Package tools pins the Flux source-controller command so that go mod tidy keeps
// its dependencies in this wrapper module.
package tools

import _ "github.com/fluxcd/source-controller"
