package regserver

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

func TestFaultProxy(t *testing.T) {
	srv := InProcess(t, InProcessOptions{})
	fp := NewFaultProxy(t, srv.URL)
	fp.Inject(t, Fault{Method: "GET", Path: `^/v2/$`, Kind: FaultStatus, Status: 429, RetryAfter: "7", Times: 2})
	fp.Inject(t, Fault{Method: "POST", Path: `/blobs/uploads/`, Kind: FaultReset, ResetAfter: 10})

	get := func() *http.Response {
		t.Helper()
		resp, err := http.Get(fp.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := 0; i < 2; i++ {
		if resp := get(); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
			t.Fatalf("request %d: %s Retry-After %q, want injected 429", i, resp.Status, resp.Header.Get("Retry-After"))
		}
	}
	if resp := get(); resp.StatusCode != http.StatusOK {
		t.Fatalf("third request: %s, want the registry's 200 once the fault is used up", resp.Status)
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	_, err := client.Post(fp.URL+"/v2/acme/notes/blobs/uploads/?digest=sha256:00", "application/octet-stream", bytes.NewReader(make([]byte, 1<<20)))
	if err == nil || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset")) {
		t.Fatalf("POST through a reset fault = %v, want a connection reset", err)
	}

	reqs := fp.Requests()
	if len(reqs) != 4 || reqs[0].Fault != "status" || reqs[2].Fault != "" || reqs[2].Status != 200 || reqs[3].Fault != "reset" {
		t.Fatalf("recorded = %+v", reqs)
	}
	for i := 1; i < len(reqs); i++ {
		if reqs[i].Time.Before(reqs[i-1].Time) {
			t.Errorf("request times not in arrival order: %+v", reqs)
		}
	}
	if got := fp.Matching("GET", `^/v2/$`); len(got) != 3 {
		t.Errorf("Matching GET /v2/ = %d requests, want 3", len(got))
	}
}

func TestUploadCounter(t *testing.T) {
	srv := InProcess(t, InProcessOptions{})
	body := []byte("hello blob")
	// sha256 of "hello blob", a monolithic upload.
	const digest = "sha256:e997afd18e5f6be004fc193aed2c90291e68ab2c7599a62538c935b7fca6ab0f"
	resp, err := http.Post(srv.URL+"/v2/acme/notes/blobs/uploads/?digest="+digest, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic upload: %s", resp.Status)
	}
	if got := srv.Uploads.Bytes(); got != int64(len(body)) || srv.Uploads.Commits() != 1 {
		t.Errorf("Bytes, Commits = %d, %d; want %d, 1", got, srv.Uploads.Commits(), len(body))
	}
	srv.Uploads.Reset()
	if srv.Uploads.Bytes() != 0 || srv.Uploads.Commits() != 0 {
		t.Error("Reset did not clear the counters")
	}
}

func TestDistributionStarts(t *testing.T) {
	ds := Distribution(t, DistributionOptions{})
	resp, err := http.Get("http://" + ds.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/ through the proxy: %s %v", resp.Status, resp.Header)
	}
}
