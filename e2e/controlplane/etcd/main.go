// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3, built here
// so the e2e control plane needs nothing but Go modules.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
