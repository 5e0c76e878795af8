package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/notesctl/notesctl/registry/attest"
)

// BenchmarkReleaseSign is BenchmarkRelease of the fixture with no keys,
// with --sign-key, and with --sign-key plus --verify-key: the difference
// is the cost of signing the digest (one ECDSA P-256 signature, the bundle,
// the referrer written into the layout, the check for an existing
// signature) and of the verify-before-deploy gate. sign-ms/op and
// verify-ms/op are those stages alone (verify includes the completeness
// check every release makes). The key is decrypted
// once before the loop, as the CLI does once per run (scrypt: see
// BenchmarkLoadSigner in registry/attest).
//
//	GOTOOLCHAIN=local go test ./pipeline -run '^$' -bench 'BenchmarkReleaseSign$' -benchtime 10x -count 5
func BenchmarkReleaseSign(b *testing.B) {
	priv, pub, err := attest.GenerateKeyPair([]byte("bench"))
	if err != nil {
		b.Fatal(err)
	}
	signer, err := attest.LoadSigner(string(priv), func(k string) string {
		if k == attest.EnvPassword {
			return "bench"
		}
		return ""
	})
	if err != nil {
		b.Fatal(err)
	}
	verify, err := attest.LoadPublicKey(string(pub), nil)
	if err != nil {
		b.Fatal(err)
	}
	site := benchReleaseSite(b, -1)
	template := benchGitOpsTemplate(b)
	for _, k := range []struct {
		name string
		keys Keys
	}{
		{"keys=none", Keys{}},
		{"keys=sign", Keys{Sign: signer}},
		{"keys=sign+verify", Keys{Sign: signer, Verify: verify}},
	} {
		b.Run(k.name, func(b *testing.B) {
			ctx := context.Background()
			var sign, verify time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				work := filepath.Join(b.TempDir(), fmt.Sprint(i))
				gitops := filepath.Join(work, "gitops")
				if err := os.CopyFS(gitops, os.DirFS(template)); err != nil {
					b.Fatal(err)
				}
				opts := benchReleaseOptions(site, filepath.Join(work, "image"), gitops)
				opts.Keys = k.keys
				b.StartTimer()

				res, err := Release(ctx, opts, Discard)
				if err != nil {
					b.Fatalf("release: %v", err)
				}

				b.StopTimer()
				if !res.GitOps.Changed || (k.keys.Sign != nil) != (len(res.Signatures) >= 1) {
					b.Fatalf("release: changed=%v signatures=%d", res.GitOps.Changed, len(res.Signatures))
				}
				sign += time.Duration(res.Durations[StageSign])
				verify += time.Duration(res.Durations[StageVerify])
				if err := os.RemoveAll(work); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			// The stages on their own: on a shared machine the whole
			// release varies by more than signing costs.
			b.ReportMetric(float64(sign.Microseconds())/1000/float64(b.N), "sign-ms/op")
			b.ReportMetric(float64(verify.Microseconds())/1000/float64(b.N), "verify-ms/op")
		})
	}
}
