package manifests

import (
	"bytes"
	"strings"
	"time"
)

// Deployed is what a policy's markers held after one commit of the GitOps
// history.
type Deployed struct {
	Commit  string    `json:"commit"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	Found   []Found   `json:"found"`
}

// Ref is the whole image reference the markers hold, if any marker holds
// one; else the name:tag@digest assembled from the field markers.
func (d Deployed) Ref() string {
	var name, tag, digest string
	for _, f := range d.Found {
		switch f.Field {
		case FieldImage:
			return f.Value
		case FieldName:
			name = f.Value
		case FieldTag:
			tag = f.Value
		case FieldDigest:
			digest = f.Value
		}
	}
	ref := name
	if tag != "" {
		ref += ":" + tag
	}
	if digest != "" {
		ref += "@" + digest
	}
	return ref
}

// MarkerFileName and MarkerFileContent say which files of a commit can
// hold a setter marker, so that reading a GitOps history copies only those:
// the files Flux reads (MarkerFileName) that contain the marker text.
func MarkerFileName(name string) bool {
	return isCandidate(name[strings.LastIndex(name, "/")+1:])
}

// MarkerFileContent: see MarkerFileName.
func MarkerFileContent(data []byte) bool {
	return bytes.Contains(data, []byte("$imagepolicy"))
}

// DeployChanges keeps, of the states of a history read newest first, the
// commits after which the policy's markers held something other than
// before (each compared with the next older one), and none that held no
// marker.
func DeployChanges(states []Deployed) []Deployed {
	var out []Deployed
	for i, st := range states {
		if len(st.Found) == 0 {
			continue
		}
		if i+1 < len(states) && states[i+1].Ref() == st.Ref() {
			continue
		}
		out = append(out, st)
	}
	return out
}
