//go:build !screenshots

package e2e

// screenshots is false: `make screenshots` (-tags screenshots) takes them.
const screenshots = false
