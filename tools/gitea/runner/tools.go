//go:build tools

// Package tools pins the runner command so that go mod tidy keeps its
// dependencies in this wrapper module.
package tools

import _ "gitea.com/gitea/runner"
