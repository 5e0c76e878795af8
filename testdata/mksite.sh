#!/usr/bin/env bash
# Copies the notes-site fixture into a fresh git repository (one commit at a
# fixed time, so its hash and the image digest are the same everywhere) and
# prints the repository's path. Usage: testdata/mksite.sh [DIR]
set -euo pipefail
src="$(cd "$(dirname "$0")/site" && pwd)"
dst="${1:-$(mktemp -d "${TMPDIR:-/tmp}/notes-site.XXXXXX")}"
mkdir -p "$dst"
cp -R "$src/." "$dst/"
export GIT_AUTHOR_NAME="Notes Author" GIT_AUTHOR_EMAIL="author@example.org"
export GIT_COMMITTER_NAME="Notes Author" GIT_COMMITTER_EMAIL="author@example.org"
export GIT_AUTHOR_DATE="2025-05-07T06:11:56Z" GIT_COMMITTER_DATE="2025-05-07T06:11:56Z"
git -C "$dst" init -q -b main
git -C "$dst" -c core.autocrlf=false add -A
git -C "$dst" -c commit.gpgsign=false commit -q -m "Initial notes"
printf '%s\n' "$dst"
