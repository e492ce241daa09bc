package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the generated part of docs/configuration.md (make docs)")

// TestConfigurationDoc keeps the base-sim tables of docs/configuration.md in
// step with the flags. `make docs` rewrites them.
func TestConfigurationDoc(t *testing.T) {
	var o options
	fs := pflag.NewFlagSet("base-sim", pflag.ContinueOnError)
	o.addFlags(fs)
	const path = "../../docs/configuration.md"
	want := config.MarkdownTables(fs, groups, envVars)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	begin := "<!-- BEGIN GENERATED base-sim flags: make docs -->\n"
	end := "<!-- END GENERATED base-sim flags -->"
	doc := string(data)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	require.True(t, i >= 0 && j > i, "%s lacks the markers %q and %q", path, begin, end)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o644))
		return
	}
	require.Equal(t, want, doc[i+len(begin):j], "%s is out of date: run `make docs`", path)
}

func TestEveryFlagIsGrouped(t *testing.T) {
	var o options
	fs := pflag.NewFlagSet("base-sim", pflag.ContinueOnError)
	o.addFlags(fs)
	var b strings.Builder
	config.PrintUsage(&b, fs, groups, 0)
	require.NotContains(t, b.String(), config.OtherTitle+":")
}
