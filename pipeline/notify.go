package pipeline

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/notesctl/notesctl/manifests"
)

var nowFunc = time.Now

// receiverPayload is the body sent to a Flux Receiver. Flux's generic-hmac
// receiver only checks the signature; the body says what changed for logs.
type receiverPayload struct {
	Image  string `json:"image"`
	Digest string `json:"digest"`
	Commit string `json:"gitopsCommit"`
	Source string `json:"sourceCommit"`
}

// SignBody returns the X-Signature header value Flux's generic-hmac
// receiver expects: "sha256=" + hex(HMAC-SHA256(token, body)).
func SignBody(token string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// notifyReceiver posts a signed request to a Flux Receiver so that Flux
// reconciles now instead of at its next interval.
func notifyReceiver(ctx context.Context, url, token string, res *ReleaseResult) (string, error) {
	if token == "" {
		return "", fmt.Errorf("--flux-webhook needs the receiver token in NOTESCTL_FLUX_WEBHOOK_TOKEN")
	}
	body, err := json.Marshal(receiverPayload{Image: res.Build.Image, Digest: res.Build.Digest, Commit: res.GitOps.Commit, Source: res.Build.Commit})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	redacted := manifests.RedactURL(url)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("Flux receiver %s: %w", redacted, ctx.Err())
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return "", fmt.Errorf("--flux-webhook %s: %v", redacted, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Signature", SignBody(token, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			lastErr = fmt.Errorf("Flux receiver %s: %s", redacted, manifests.RedactText(err.Error(), token))
			continue
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			lastErr = fmt.Errorf("Flux receiver %s answered %s", redacted, resp.Status)
			continue
		}
		if resp.StatusCode >= 300 {
			return "", fmt.Errorf("Flux receiver %s answered %s (check the token and the receiver path)", redacted, resp.Status)
		}
		return "Flux receiver " + redacted + " notified: reconciling now", nil
	}
	return "", lastErr
}
