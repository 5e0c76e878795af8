// Package fluxparity holds the test that checks notesctl's setter update
// against the marker reading of kyaml's fieldmeta, the library Flux's
// image-automation-controller (v1.2.0) reads setter markers with. It lives
// in its own package so that kyaml's OpenAPI data is linked into this test
// binary only.
package fluxparity
