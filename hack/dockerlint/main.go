// Command dockerlint lints the project's Dockerfile without a container
// engine: BuildKit's own Dockerfile checks (the rules `docker build --check`
// runs, e.g. JSONArgsRecommended, FromAsCasing, UndefinedArgInFrom), with
// base images resolved offline, plus this project's rules: the builder's Go
// version is go.mod's, the build is static with the version stamped, and the
// final stage is distroless static, non-root, with an exec-form ENTRYPOINT.
//
// It is a separate module so BuildKit never enters the controller's go.mod.
//
//	go run . ../../Dockerfile ../../go.mod
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/mod/modfile"
)

// Project rules for the final stage.
const (
	runtimeImage = "gcr.io/distroless/static:nonroot"
	runtimeUser  = "nonroot"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: dockerlint DOCKERFILE GO.MOD")
		os.Exit(2)
	}
	problems, err := lint(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockerlint:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("%s: no problems\n", os.Args[1])
}

// lint returns every problem of the Dockerfile at path.
func lint(path, goModPath string) ([]string, error) {
	dt, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	mod, err := os.ReadFile(goModPath)
	if err != nil {
		return nil, err
	}
	mf, err := modfile.ParseLax(goModPath, mod, nil)
	if err != nil {
		return nil, err
	}
	if mf.Go == nil {
		return nil, errors.New(goModPath + ": no go directive")
	}
	problems, err := buildkitChecks(path, dt)
	if err != nil {
		return nil, err
	}
	rules, err := projectRules(path, dt, mf.Go.Version)
	if err != nil {
		return nil, err
	}
	return append(problems, rules...), nil
}

// buildkitChecks runs BuildKit's lint rules over every stage.
func buildkitChecks(path string, dt []byte) ([]string, error) {
	sm := llb.NewSourceMap(nil, path, "Dockerfile", dt)
	sm.Definition = &llb.Definition{}
	res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{SourceMap: sm, MetaResolver: offlineResolver{}})
	if err != nil {
		return nil, err
	}
	var problems []string
	if res.Error != nil {
		problems = append(problems, fmt.Sprintf("%s: %s", path, res.Error.Message))
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		problems = append(problems, fmt.Sprintf("%s:%d: %s: %s", path, line, w.RuleName, w.Detail))
	}
	return problems, nil
}

// projectRules checks this project's rules for the image: a multi-stage build whose
// builder uses go.mod's Go version, a static binary with the version stamped, and a final
// distroless static stage that runs nothing, ends as the non-root user and has an
// exec-form ENTRYPOINT.
func projectRules(path string, dt []byte, goVersion string) ([]string, error) {
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, err
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, err
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, path+": "+fmt.Sprintf(format, args...)) }

	goArg := ""
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Key == "GO_VERSION" && kv.Value != nil {
				goArg = *kv.Value
			}
		}
	}
	if goArg != goVersion {
		add("ARG GO_VERSION=%q must be go.mod's go version %q", goArg, goVersion)
	}
	if len(stages) < 2 {
		add("want a multi-stage build, got %d stage(s)", len(stages))
		return problems, nil
	}
	if !strings.Contains(stages[0].BaseName, "${GO_VERSION}") {
		add("the builder %q must use ${GO_VERSION}", stages[0].BaseName)
	}
	static, stamped := false, false
	for _, s := range stages[:len(stages)-1] {
		for _, cmd := range s.Commands {
			if run, ok := cmd.(*instructions.RunCommand); ok {
				line := strings.Join(run.CmdLine, " ")
				static = static || strings.Contains(line, "CGO_ENABLED=0")
				stamped = stamped || strings.Contains(line, "/pkg/version.Version=")
			}
		}
	}
	if !static {
		add("the binary must be built with CGO_ENABLED=0 (static)")
	}
	if !stamped {
		add("the build must stamp pkg/version.Version through -ldflags")
	}

	final := stages[len(stages)-1]
	if final.BaseName != runtimeImage {
		add("the final stage must be FROM %s, not %s", runtimeImage, final.BaseName)
	}
	user, entrypoint := "", false
	for _, cmd := range final.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entrypoint = !c.PrependShell
		case *instructions.RunCommand:
			add("the final stage must not RUN anything (distroless has no shell)")
		}
	}
	if user != runtimeUser {
		add("the final stage must end as USER %s, not %q", runtimeUser, user)
	}
	if !entrypoint {
		add("the final stage needs an exec-form ENTRYPOINT")
	}
	return problems, nil
}

// offlineResolver answers every base image with an empty linux/amd64 config,
// so linting needs no registry.
type offlineResolver struct{}

// ResolveImageConfig implements llb.ImageMetaResolver.
func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"},"config":{}}`)
	return ref, digest.FromBytes(cfg), cfg, nil
}
