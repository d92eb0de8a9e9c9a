//go:build screenshots

package e2e

// screenshots is true: this run writes docs/screenshots (make screenshots).
const screenshots = true
