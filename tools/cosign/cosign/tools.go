//go:build tools

// Package tools pins the cosign command so that go mod tidy keeps its
// dependencies in this wrapper module.
package tools

import (
	_ "github.com/sigstore/cosign/v3/cmd/cosign"
)
