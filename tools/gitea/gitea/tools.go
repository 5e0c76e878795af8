//go:build tools

// Package tools pins the Gitea server command so that go mod tidy keeps its
// dependencies in this wrapper module.
package tools

import _ "code.gitea.io/gitea"
