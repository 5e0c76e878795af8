package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestRetryBlobUnknown(t *testing.T) {
	blobUnknown := &transport.Error{StatusCode: 400, Errors: []transport.Diagnostic{{Code: transport.ManifestBlobUnknownErrorCode}}}
	denied := &transport.Error{StatusCode: 403, Errors: []transport.Diagnostic{{Code: transport.DeniedErrorCode}}}
	tests := []struct {
		name      string
		failures  []error // what put returns, call by call; then nil
		wantCalls int
		wantErr   bool
	}{
		{"first try", nil, 1, false},
		{"blob seen on the second look", []error{blobUnknown}, 2, false},
		{"wrapped, as the referrer push returns it", []error{errors.Join(errors.New("put referrer manifest"), blobUnknown)}, 2, false},
		{"other errors are not retried", []error{denied}, 1, true},
		{"gives up after Attempts", []error{blobUnknown, blobUnknown, blobUnknown, blobUnknown}, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := RetryBlobUnknown(context.Background(), RetryPolicy{Attempts: 3, Base: time.Millisecond}, func() error {
				calls++
				if calls <= len(tt.failures) {
					return tt.failures[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls || (err != nil) != tt.wantErr {
				t.Errorf("%d calls, err %v; want %d calls, error %v", calls, err, tt.wantCalls, tt.wantErr)
			}
		})
	}
}
