// Command module-controller runs the ModuleController: it turns Koupleless bases
// into virtual nodes and module pods into biz installs.
package main

import (
	"fmt"
	"os"

	"github.com/moduleops/module-controller/pkg/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Printf("module-controller %s (%s)\n", version.Version, version.Commit)
		return
	}
	fmt.Fprintln(os.Stderr, "module-controller: not implemented yet")
	os.Exit(1)
}
