package framework

import (
	"crypto/rand"
	"strings"
)

// RandomName returns prefix followed by a random suffix of n lowercase
// letters and digits (n <= 26), valid in DNS-1123 names, so concurrent and
// repeated tests never collide on object names, topics or client IDs.
func RandomName(prefix string, n int) string {
	return prefix + strings.ToLower(rand.Text()[:min(n, 26)])
}
