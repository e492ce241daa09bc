// Package provider is the per-base virtual-kubelet provider: it translates module pods into biz commands and biz states into pod and node status.
package provider
