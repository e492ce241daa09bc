package main

import (
	"strings"
	"testing"
)

func TestProjectDockerfileIsClean(t *testing.T) {
	problems, err := lint("../../Dockerfile", "../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("problems:\n%s", strings.Join(problems, "\n"))
	}
}

func TestEveryRuleFires(t *testing.T) {
	problems, err := lint("testdata/bad.Dockerfile", "../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		"FromAsCasing", "StageNameCasing", "WorkdirRelativePath", "JSONArgsRecommended", // BuildKit
		"go.mod's go version", "must use ${GO_VERSION}", "CGO_ENABLED=0", "pkg/version.Version",
		"FROM gcr.io/distroless/static:nonroot", "USER nonroot", "exec-form ENTRYPOINT",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem mentions %q; got:\n%s", want, all)
		}
	}
}
