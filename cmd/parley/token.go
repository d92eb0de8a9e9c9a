package main

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parley/parley/internal/auth"
)

// token is `parley token`: mint an access token, or with a subcommand
// make the secrets and keys servers verify tokens with.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "secret":
			return tokenSecret(args[1:], stdout, stderr)
		case "keypair":
			return tokenKeypair(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("parley token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage:
  parley token [flags]        print an access token
  parley token secret         print a new random secret for --auth-secret
  parley token keypair --alg ed25519|es256 --out PREFIX
                              write PREFIX.key (for --key) and PREFIX.pub (for --auth-public-key)

Flags:
`)
		fs.PrintDefaults()
	}
	var o mintOptions
	fs.StringVar(&o.secret, "auth-secret", getenv("PARLEY_AUTH_SECRET"), "the server's --auth-secret (or PARLEY_AUTH_SECRET)")
	fs.StringVar(&o.keyFile, "key", "", "sign with this PEM private key `file` (ES256 or Ed25519) instead of the secret; the server holds the public key (--auth-public-key)")
	fs.StringVar(&o.kid, "kid", "", "key id put in the token's header, for servers with several keys (--auth-jwks)")
	fs.StringVar(&o.room, "room", "", "room name or pattern (e.g. team-* or *)")
	fs.StringVar(&o.identity, "identity", "", "who the token is for (its verified identity, sub)")
	fs.StringVar(&o.name, "name", "", "display name shown for the holder (default: the identity)")
	fs.DurationVar(&o.ttl, "ttl", time.Hour, "how long the token is valid")
	fs.StringVar(&o.grants, "grants", "publish,subscribe", "comma-separated grants: publish, subscribe, admin")
	if code, ok := parseArgs(fs, args); !ok {
		return code
	}
	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })
	if o.keyFile != "" && !setFlags["auth-secret"] {
		o.secret = "" // --key wins over a PARLEY_AUTH_SECRET left in the environment
	}
	tok, err := mintToken(o, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "parley token: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// parseArgs parses a command's flags and refuses other arguments; when ok
// is false the command ends with code.
func parseArgs(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		return exitCodeFor(err), false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// mintOptions are the flags of `parley token`.
type mintOptions struct {
	secret, keyFile, kid string
	room, identity, name string
	grants               string
	ttl                  time.Duration
}

func mintToken(o mintOptions, now time.Time) (string, error) {
	var errs []error
	switch {
	case o.secret == "" && o.keyFile == "":
		errs = append(errs, errors.New("--auth-secret (or PARLEY_AUTH_SECRET) or --key is required"))
	case o.secret != "" && o.keyFile != "":
		errs = append(errs, errors.New("--auth-secret and --key exclude each other (PARLEY_AUTH_SECRET counts as --auth-secret)"))
	case o.secret != "" && len(o.secret) < auth.MinSecretLen:
		errs = append(errs, fmt.Errorf("--auth-secret is %d bytes; servers refuse secrets under %d (make one with: parley token secret)", len(o.secret), auth.MinSecretLen))
	}
	if o.room == "" {
		errs = append(errs, errors.New("--room is required"))
	}
	if o.identity == "" {
		errs = append(errs, errors.New("--identity is required"))
	}
	if o.ttl <= 0 {
		errs = append(errs, errors.New("--ttl must be positive"))
	}
	var g auth.Grants
	for _, name := range strings.Split(o.grants, ",") {
		switch strings.TrimSpace(name) {
		case "publish":
			g.Publish = true
		case "subscribe":
			g.Subscribe = true
		case "admin":
			g.Admin = true
		case "":
		default:
			errs = append(errs, fmt.Errorf("unknown grant %q (publish, subscribe, admin)", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	c := auth.Claims{Room: o.room, Identity: o.identity, Name: o.name, Grants: g,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(o.ttl).Unix()}
	if o.keyFile == "" {
		return auth.Mint([]byte(o.secret), c)
	}
	pemBytes, err := os.ReadFile(o.keyFile)
	if err != nil {
		return "", fmt.Errorf("--key: %w", err)
	}
	key, err := auth.ParsePrivateKey(pemBytes)
	if err != nil {
		return "", fmt.Errorf("--key %s: %w", o.keyFile, err)
	}
	return auth.MintWithKey(key, o.kid, c)
}

// tokenSecret is `parley token secret`: 32 random bytes, base64url.
func tokenSecret(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley token secret", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if code, ok := parseArgs(fs, args); !ok {
		return code
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		fmt.Fprintf(stderr, "parley token secret: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, base64.RawURLEncoding.EncodeToString(b))
	return 0
}

// tokenKeypair is `parley token keypair`: PREFIX.key (private, 0600) for
// `parley token --key` or the application that mints tokens, PREFIX.pub
// for the server's --auth-public-key.
func tokenKeypair(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley token keypair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	alg := fs.String("alg", auth.AlgEd25519, "key algorithm: ed25519 (EdDSA tokens) or es256 (P-256)")
	out := fs.String("out", "", "write `PREFIX`.key and PREFIX.pub")
	if code, ok := parseArgs(fs, args); !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintln(stderr, "parley token keypair: --out PREFIX is required")
		return 2
	}
	key, err := auth.GenerateKey(*alg)
	if err != nil {
		fmt.Fprintf(stderr, "parley token keypair: %v\n", err)
		return 2
	}
	if err := writeKeypair(key, *out); err != nil {
		fmt.Fprintf(stderr, "parley token keypair: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s.key (private: keep it with whatever mints tokens) and %s.pub (for parley --auth-public-key)\n", *out, *out)
	return 0
}

func writeKeypair(key crypto.Signer, prefix string) error {
	priv, pub, err := auth.EncodeKeyPair(key)
	if err != nil {
		return err
	}
	// O_EXCL: never overwrite a key that may already be in use.
	f, err := os.OpenFile(prefix+".key", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	if _, err := f.Write(priv); err != nil {
		f.Close()
		return fmt.Errorf("private key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	if err := os.WriteFile(prefix+".pub", pub, 0o644); err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	return nil
}
