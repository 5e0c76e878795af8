//go:build tools

// Package tools pins the Flux controller commands so that go mod tidy keeps
// their dependencies in this wrapper module.
package tools

import (
	_ "github.com/fluxcd/image-automation-controller"
	_ "github.com/fluxcd/image-reflector-controller"
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/notification-controller"
	_ "github.com/fluxcd/source-controller"
)
