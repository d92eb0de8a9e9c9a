package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/parley/parley/internal/auth"
)

// maxFileSize bounds the config, secret and key files Load reads: more is
// a mistake (or a device such as /dev/zero), not a configuration.
const maxFileSize = 1 << 20

// readFile reads a file named in the configuration. Pipes work too
// (--auth-secret-file <(pass show parley)).
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFileSize)
	}
	return b, nil
}

// readSecrets reads --auth-secret-file and --turn-secret-file into
// AuthSecret and TURNSecret (trailing whitespace and newlines trimmed), so
// secrets need not appear on the command line, and checks that the public
// key files can be read; the server reads those itself.
func (c *Config) readSecrets(read func(string) ([]byte, error)) error {
	var errs []error
	for _, s := range []struct {
		flag, file string
		secret     *string
	}{{"auth-secret", c.AuthSecretFile, &c.AuthSecret}, {"turn-secret", c.TURNSecretFile, &c.TURNSecret}} {
		if s.file == "" {
			continue
		}
		if *s.secret != "" {
			env := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(s.flag, "-", "_"))
			errs = append(errs, fmt.Errorf("%s and %s-file exclude each other (%s in the environment or %s in the config file count as --%s)",
				s.flag, s.flag, env, strings.ReplaceAll(s.flag, "-", "_"), s.flag))
			continue
		}
		b, err := read(s.file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s-file: %w", s.flag, err))
			continue
		}
		v := strings.TrimRightFunc(string(b), unicode.IsSpace)
		if v == "" {
			errs = append(errs, fmt.Errorf("%s-file: %s is empty", s.flag, s.file))
			continue
		}
		*s.secret = v
	}
	for _, k := range []struct{ flag, file string }{{"auth-public-key", c.AuthPublicKey}, {"auth-jwks", c.AuthJWKS}} {
		if k.file == "" {
			continue
		}
		b, err := read(k.file)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", k.flag, err))
		case len(bytes.TrimSpace(b)) == 0:
			errs = append(errs, fmt.Errorf("%s: %s is empty", k.flag, k.file))
		}
	}
	return errors.Join(errs...)
}

// validateSecrets refuses what would leave a server open while it looks
// protected: a guessable auth secret, a secret file nobody read, TURN URLs
// whose credentials could never authenticate.
func (c *Config) validateSecrets(bad func(string, ...any)) {
	for _, s := range []struct{ flag, file, secret string }{
		{"auth-secret", c.AuthSecretFile, c.AuthSecret}, {"turn-secret", c.TURNSecretFile, c.TURNSecret}} {
		if s.file != "" && s.secret == "" {
			bad("%s-file: %s has not been read (config.Load reads it)", s.flag, s.file)
		}
	}
	if n := len(c.AuthSecret); n > 0 && n < auth.MinSecretLen {
		from := "auth-secret"
		if c.AuthSecretFile != "" {
			from = "auth-secret-file: " + c.AuthSecretFile
		}
		bad("%s: a secret of %d bytes can be guessed from any token; use at least %d random bytes: `parley token secret` or `openssl rand -base64 32` makes one",
			from, n, auth.MinSecretLen)
	}
	if n := len(c.TURNSecret); n > 0 && n < auth.MinSecretLen {
		// Every member is handed a password that is HMAC(secret, username):
		// a short secret falls to an offline search, and then anyone mints
		// TURN credentials.
		bad("turn-secret: a secret of %d bytes can be guessed from any TURN credential the server hands out; use at least %d random bytes: `parley token secret` or `openssl rand -base64 32` makes one",
			n, auth.MinSecretLen)
	}
	if len(c.TURNExternal) > 0 && c.TURNSecret == "" {
		bad("turn-urls: needs --turn-secret (or --turn-secret-file), the secret that TURN server checks credentials with: " +
			"without it Parley makes up a random secret at each start and the credentials it hands out could never authenticate there")
	}
}
