package forge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/giteaenv"
)

// TestGiteaForge runs the Gitea client against a real Gitea v1.26.0
// (internal/giteaenv): a pull request opened, found again and updated by its
// head branch, one comment kept by its marker, the state read, and
// auto-merge merging it when nothing blocks the merge.
func TestGiteaForge(t *testing.T) {
	env := giteaenv.Start(t, giteaenv.Options{NoRunner: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env.CreateRepo(t, "gitops")
	dir := giteaenv.GitRepo(t, map[string]string{"apps/notes/deployment.yaml": "image: a:1\n"})
	env.Push(t, dir, "gitops", "main")
	giteaenv.Git(t, dir, "checkout", "-q", "-b", "notesctl/notes/abc1234")
	giteaenv.WriteFiles(t, dir, map[string]string{"apps/notes/deployment.yaml": "image: a:2\n"})
	giteaenv.Commit(t, dir, "deploy a:2")
	env.Push(t, dir, "gitops", "notesctl/notes/abc1234")

	loc, err := Detect(env.CloneURL("gitops"), "gitea")
	if err != nil {
		t.Fatal(err)
	}
	if loc.URL != env.URL || loc.Repo != (Repo{giteaenv.Owner, "gitops"}) {
		t.Fatalf("Detect = %+v", loc)
	}
	f, err := New(ctx, Options{Kind: loc.Kind, URL: loc.URL, Token: env.Token, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	repo := loc.Repo
	spec := PRSpec{Head: "notesctl/notes/abc1234", Base: "main", Title: "Deploy a:2", Body: "diff 1"}
	pr, res, err := f.EnsurePR(ctx, repo, spec)
	if err != nil || res != Created {
		t.Fatalf("first EnsurePR = %+v, %s, %v; want created", pr, res, err)
	}
	again, res, err := f.EnsurePR(ctx, repo, spec)
	if err != nil || res != Unchanged || again.Number != pr.Number {
		t.Fatalf("EnsurePR again = %+v, %s, %v; want #%d unchanged", again, res, err, pr.Number)
	}
	spec.Body = "diff 2"
	upd, res, err := f.EnsurePR(ctx, repo, spec)
	if err != nil || res != Updated || upd.Number != pr.Number || upd.Body != "diff 2" {
		t.Fatalf("EnsurePR with a new body = %+v, %s, %v; want #%d updated", upd, res, err, pr.Number)
	}
	if prs, err := env.PullRequests("gitops", "all"); err != nil || len(prs) != 1 {
		t.Fatalf("pull requests on Gitea: %+v, %v; want exactly one", prs, err)
	}

	marker := MarkerComment("preview")
	c1, res, err := f.UpsertComment(ctx, repo, pr.Number, marker, "Preview: https://pr-1.example.org/ (abc1234)")
	if err != nil || res != Created {
		t.Fatalf("first comment: %+v, %s, %v", c1, res, err)
	}
	c2, res, err := f.UpsertComment(ctx, repo, pr.Number, marker, "Preview: https://pr-1.example.org/ (def5678)")
	if err != nil || res != Updated || c2.ID != c1.ID {
		t.Fatalf("second comment: %+v, %s, %v; want comment %d updated", c2, res, err, c1.ID)
	}
	if _, res, err := f.UpsertComment(ctx, repo, pr.Number, marker, "Preview: https://pr-1.example.org/ (def5678)"); err != nil || res != Unchanged {
		t.Fatalf("same comment again: %s, %v; want unchanged", res, err)
	}
	cs, err := env.Comments("gitops", pr.Number)
	if err != nil || len(cs) != 1 || !strings.Contains(cs[0].Body, "def5678") || !strings.HasPrefix(cs[0].Body, marker) {
		t.Fatalf("comments on Gitea: %+v, %v; want one, updated, with the marker", cs, err)
	}

	got, err := f.GetPR(ctx, repo, pr.Number)
	if err != nil || got.State != StateOpen || got.Merged || got.Head != spec.Head || got.Base != "main" || got.HeadSHA == "" {
		t.Fatalf("GetPR = %+v, %v; want open, unmerged", got, err)
	}
	if _, err := f.GetPR(ctx, repo, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetPR of a missing pull request: %v, want ErrNotFound", err)
	}

	if err := f.EnableAutoMerge(ctx, repo, got); err != nil {
		t.Fatal(err)
	}
	for {
		got, err = f.GetPR(ctx, repo, pr.Number)
		if err != nil {
			t.Fatal(err)
		}
		if got.Merged {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("auto-merge: #%d not merged: %+v", pr.Number, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.State != StateClosed || got.MergeCommit == "" {
		t.Errorf("merged pull request = %+v; want closed with a merge commit", got)
	}
	if head := strings.TrimSpace(giteaenv.Git(t, dir, "ls-remote", env.AuthURL("gitops"), "refs/heads/main")); !strings.HasPrefix(head, got.MergeCommit) {
		t.Errorf("main is at %q, want the merge commit %s", head, got.MergeCommit)
	}
	// A new EnsurePR for the same head after the merge opens a new one: the
	// merged pull request is left alone.
	giteaenv.WriteFiles(t, dir, map[string]string{"apps/notes/deployment.yaml": "image: a:3\n"})
	giteaenv.Commit(t, dir, "deploy a:3")
	env.Push(t, dir, "gitops", "notesctl/notes/abc1234")
	next, res, err := f.EnsurePR(ctx, repo, spec)
	if err != nil || res != Created || next.Number == pr.Number {
		t.Fatalf("EnsurePR after the merge = %+v, %s, %v; want a new pull request", next, res, err)
	}
}
