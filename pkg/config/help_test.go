package config

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the generated part of docs/configuration.md (make docs)")

// configurationDoc is the documentation page with every setting.
const configurationDoc = "../../docs/configuration.md"

func flagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("module-controller", pflag.ContinueOnError)
	NewOptions().AddFlags(fs)
	return fs
}

// TestConfigurationDoc keeps docs/configuration.md in step with the flags:
// its module-controller tables are rendered from AddFlags. `make docs`
// rewrites them.
func TestConfigurationDoc(t *testing.T) {
	checkDocSection(t, configurationDoc, "module-controller", MarkdownTables(flagSet(), Groups(), EnvVars), *update)
}

// checkDocSection compares the part of the file between the BEGIN and END
// markers of name with want, or rewrites it when update is set.
func checkDocSection(t *testing.T, path, name, want string, update bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	begin := "<!-- BEGIN GENERATED " + name + " flags: make docs -->\n"
	end := "<!-- END GENERATED " + name + " flags -->"
	doc := string(data)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	require.True(t, i >= 0 && j > i, "%s lacks the markers %q and %q", path, begin, end)
	got := doc[i+len(begin) : j]
	if update {
		require.NoError(t, os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o644))
		return
	}
	require.Equal(t, want, got, "%s is out of date: run `make docs`", path)
}

func TestUsageListsEveryFlagWithEnvAndDefault(t *testing.T) {
	fs := flagSet()
	var b strings.Builder
	PrintUsage(&b, fs, Groups(), 0)
	usage := b.String()
	for _, g := range Groups() {
		require.Contains(t, usage, g.Title+":\n")
	}
	require.NotContains(t, usage, OtherTitle+":", "every module-controller flag belongs to a group")
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Deprecated != "" {
			return
		}
		require.Regexp(t, `--`+f.Name+`[ \[]`, usage)
		if envs := EnvVars(f.Name); len(envs) > 0 {
			require.Contains(t, usage, "[$"+strings.Join(envs, ", $")+"]")
		}
	})
	require.Contains(t, usage, `(default "127.0.0.1:1883")`)
	// The reference controller's variable names are kept.
	for _, env := range []string{"ENV", "CLIENT_ID", "MQTT_BROKER", "MQTT_PORT", "MQTT_USERNAME", "MQTT_PASSWORD",
		"MQTT_CLIENT_PREFIX", "MQTT_CA_PATH", "MQTT_CLIENT_CRT_PATH", "MQTT_CLIENT_KEY_PATH", "VNODE_WORKER_NUM", "LOG_FORMAT"} {
		require.Regexp(t, `\$`+env+`[],]`, usage)
	}
	require.NotContains(t, usage, "--message-max-age", "an old flag name works but is not shown")
}

func TestUngroupedFlagsAreShownUnderOther(t *testing.T) {
	fs := flagSet()
	fs.Bool("brand-new", false, "a flag nobody grouped yet")
	var b strings.Builder
	PrintUsage(&b, fs, Groups(), 0)
	require.Contains(t, b.String(), OtherTitle+":\n      --brand-new")
}
