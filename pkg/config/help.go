package config

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// Group is a titled set of flags, for --help and docs/configuration.md.
type Group struct {
	// Title names the group.
	Title string
	// Flags are the flag names, in display order.
	Flags []string
}

// Groups orders the settings for --help and docs/configuration.md. A flag
// missing here is still shown, under OtherTitle.
var Groups = []Group{
	{"MQTT broker and tunnel", []string{
		"env", "mqtt-broker", "mqtt-port", "mqtt-username", "mqtt-password", "mqtt-ca-path",
		"mqtt-client-crt-path", "mqtt-client-key-path", "mqtt-client-prefix", "client-id",
		"embedded-broker-address", "message-max-age", "mqtt-max-message-bytes", "command-timeout",
	}},
	{"HTTP tunnel", []string{
		"http-tunnel", "http-tunnel-listen", "http-tunnel-install-timeout", "http-tunnel-max-in-flight",
		"http-tunnel-token", "http-tunnel-tls-crt-path", "http-tunnel-tls-key-path", "http-tunnel-client-ca-path",
		"http-tunnel-allow-foreign-ip", "mqtt-tunnel",
	}},
	{"Embedded MQTT broker security", []string{
		"embedded-broker-password-file", "embedded-broker-max-packet-size", "embedded-broker-tls-crt-path",
		"embedded-broker-tls-key-path", "embedded-broker-client-ca-path",
	}},
	{"Kubernetes API", []string{"kubeconfig", "kube-api-qps", "kube-api-burst"}},
	{"Cluster mode (several replicas)", []string{
		"cluster-mode", "namespace", "cluster-lease-duration", "cluster-renew-deadline",
		"cluster-renew-interval", "cluster-retry-period",
	}},
	{"Virtual nodes", []string{
		"unreachable-after", "remove-after", "health-interval", "node-lease-duration",
		"lease-renew-interval", "node-status-interval", "max-pods", "env-taint",
	}},
	{"Module pods", []string{"install-timeout", "query-interval", "uninstall-orphans", "pod-workers", "peer-replica-sync"}},
	{"Kubelet API (kubectl logs)", []string{
		"kubelet-port", "kubelet-address", "kubelet-bind-address", "kubelet-tls-cert", "kubelet-tls-key",
		"kubelet-client-ca", "base-container",
	}},
	{"Limits", []string{"max-bases", "base-message-rate", "base-message-burst", "max-clock-skew", "allow-loopback-base-ip"}},
	{"Serving and logging", []string{"metrics-address", "health-address", "pprof-address", "log-level", "log-format", "version"}},
}

// OtherTitle is the group of flags that no entry of Groups lists.
const OtherTitle = "Other"

// EnvVar returns the environment variable read for a flag, or "" if none.
func EnvVar(flag string) string {
	for _, s := range settings {
		if s.flag == flag {
			return s.env
		}
	}
	return ""
}

// grouped returns groups (Groups, then OtherTitle for the rest) of the flags
// defined in fs, skipping empty groups and flags fs does not define.
func grouped(fs *pflag.FlagSet, groups []Group) []Group {
	var out []Group
	listed := map[string]bool{}
	for _, g := range groups {
		var names []string
		for _, n := range g.Flags {
			listed[n] = true
			if fs.Lookup(n) != nil {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			out = append(out, Group{g.Title, names})
		}
	}
	var rest []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !listed[f.Name] && f.Name != "help" {
			rest = append(rest, f.Name)
		}
	})
	if len(rest) > 0 {
		slices.Sort(rest)
		out = append(out, Group{OtherTitle, rest})
	}
	return out
}

// PrintUsage writes the flags of fs to w by group (Groups; pass nil for one
// plain list), each with its environment variable and default, wrapped at
// cols columns.
func PrintUsage(w io.Writer, fs *pflag.FlagSet, groups []Group, cols int) {
	for i, g := range grouped(fs, groups) {
		if i > 0 {
			_, _ = fmt.Fprintln(w)
		}
		sub := pflag.NewFlagSet(g.Title, pflag.ContinueOnError)
		for _, n := range g.Flags {
			sub.AddFlag(fs.Lookup(n))
		}
		sub.SortFlags = false
		_, _ = fmt.Fprintf(w, "%s:\n%s", g.Title, sub.FlagUsagesWrapped(cols))
	}
}

// MarkdownTables renders the flags of fs as one Markdown table per group
// (Groups; nil for one table): flag, environment variable (from env, which
// may return ""), default and meaning. docs/configuration.md embeds it.
func MarkdownTables(fs *pflag.FlagSet, groups []Group, env func(flag string) string) string {
	var b strings.Builder
	for i, g := range grouped(fs, groups) {
		if i > 0 {
			b.WriteString("\n")
		}
		if groups != nil {
			fmt.Fprintf(&b, "### %s\n\n", g.Title)
		}
		b.WriteString("| Flag | Environment | Default | Meaning |\n| --- | --- | --- | --- |\n")
		for _, n := range g.Flags {
			f := fs.Lookup(n)
			usage := f.Usage
			if i := strings.LastIndex(usage, " [$"); i >= 0 {
				usage = usage[:i]
			}
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.Name, code(env(f.Name)), code(f.DefValue), cell(usage))
		}
	}
	return b.String()
}

// code formats s as inline code, or a dash when empty.
func code(s string) string {
	if s == "" {
		return "–"
	}
	return "`" + s + "`"
}

// cell escapes s for a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "\n", " ").Replace(s)
}
