// Package fluxparity holds the tests that check notesctl's setter update
// against Flux's image-automation-controller v1.2.0:
//
//   - TestFluxWritesTheSameBytes builds the controller's own update code
//     (its internal/update package, unchanged, from the Go module cache;
//     see testdata/fluxrun) and runs it and notesctl over every golden input
//     of the manifests package and the marker forms here, comparing bytes;
//     it needs the Go module proxy or a warm module cache (a skip locally
//     otherwise, a failure with NOTESCTL_REQUIRE_TOOLS=1);
//   - TestSetterParity compares the values with kyaml's fieldmeta, the
//     library Flux reads markers with, and needs nothing but this module.
//
// It lives in its own package so that kyaml's OpenAPI data is linked into
// this test binary only.
package fluxparity
