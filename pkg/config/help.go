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

// Groups returns the sections of module-controller's --help and
// docs/configuration.md: the groups of the table, in order.
func Groups() []Group {
	var out []Group
	for _, g := range NewOptions().table() {
		var flags []string
		for _, s := range g.settings {
			flags = append(flags, s.flag)
		}
		out = append(out, Group{Title: g.title, Flags: flags})
	}
	return out
}

// OtherTitle is the group of flags that no entry of Groups lists.
const OtherTitle = "Other"

// EnvVars returns the environment variables read for a module-controller
// flag, in the order they are read (nil if none).
func EnvVars(flag string) []string {
	for _, g := range NewOptions().table() {
		for _, s := range g.settings {
			if s.flag == flag {
				return s.envs()
			}
		}
	}
	return nil
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
		if !listed[f.Name] && f.Name != "help" && f.Deprecated == "" && !f.Hidden {
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
// (Groups; nil for one table): flag, environment variables (from env, the
// first one read first), default and meaning. docs/configuration.md embeds it.
func MarkdownTables(fs *pflag.FlagSet, groups []Group, env func(flag string) []string) string {
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
			var envs []string
			for _, e := range env(f.Name) {
				envs = append(envs, code(e))
			}
			if len(envs) == 0 {
				envs = []string{code("")}
			}
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.Name, strings.Join(envs, ", "), code(f.DefValue), cell(usage))
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
