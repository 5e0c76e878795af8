package regserver

import (
	"io"
	"log"

	"github.com/notesctl/notesctl/internal/testenv"
)

// Cert is testenv's throwaway certificate, as the registries here serve it.
type Cert = testenv.Cert

// NewCert generates a certificate for 127.0.0.1, ::1 and localhost into dir.
func NewCert(dir string) (*Cert, error) { return testenv.NewCert(dir, "notesctl test registry") }

// discardLogger silences servers whose default is to log every request.
func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
