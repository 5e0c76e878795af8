// Package sitegit turns a directory into a site repository with commits at
// fixed times, so that tests of the pipeline see real commits with
// reproducible hashes.
package sitegit

import (
	"fmt"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/notesctl/notesctl/internal/sitegen"
)

// Epoch is the commit time of the first commit Init makes.
var Epoch = time.Date(2025, 5, 7, 6, 11, 56, 0, time.UTC)

// Init makes dir a git repository on branch main and commits everything in
// it at Epoch. It returns the commit hash.
func Init(dir string) (string, error) {
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return "", fmt.Errorf("git init %s: %w", dir, err)
	}
	cfg, err := repo.Config()
	if err != nil {
		return "", err
	}
	cfg.Remotes["origin"] = &config.RemoteConfig{Name: "origin", URLs: []string{"https://git.example.org/notes/site.git"}}
	if err := repo.SetConfig(cfg); err != nil {
		return "", err
	}
	return CommitAll(dir, "Initial notes", Epoch)
}

// CommitAll stages every change in dir (additions, edits, deletions) and
// commits it at the given time.
func CommitAll(dir, message string, when time.Time) (string, error) {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return "", err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return "", fmt.Errorf("git add in %s: %w", dir, err)
	}
	sig := &object.Signature{Name: "Notes Author", Email: "author@example.org", When: when}
	h, err := wt.Commit(message, &git.CommitOptions{Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		return "", fmt.Errorf("git commit in %s: %w", dir, err)
	}
	return h.String(), nil
}

// Fixture copies testdata/site into dir (missing or empty) and commits it
// with Init: the notes site as every test starts from it.
func Fixture(dir string) (string, error) {
	if err := sitegen.CopyFixture(dir); err != nil {
		return "", err
	}
	return Init(dir)
}
