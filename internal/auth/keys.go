package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Key algorithms GenerateKey accepts (the names `parley token keypair
// --alg` takes).
const (
	AlgEd25519 = "ed25519"
	AlgES256   = "es256"
)

// publicKey is a parsed verification key and the one JWT alg it verifies.
type publicKey struct {
	alg string
	verifyKey
}

// keyAlg is the JWT alg a public key verifies, or an error for key types
// Parley does not accept.
func keyAlg(k any) (string, error) {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key on %s: only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256.Alg(), nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg(), nil
	default:
		return "", fmt.Errorf("%T keys are not supported (ES256 P-256 or Ed25519)", k)
	}
}

// parsePublicKeysPEM reads every "PUBLIC KEY" block; any other block, or
// none at all, is an error.
func parsePublicKeysPEM(b []byte) ([]publicKey, error) {
	var keys []publicKey
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "PUBLIC KEY" {
			if strings.Contains(blk.Type, "PRIVATE") {
				return nil, fmt.Errorf("block %d is a %s: give the server only the public key (parley token keypair writes it to PREFIX.pub)", n, blk.Type)
			}
			return nil, fmt.Errorf("block %d is a %q, not a PUBLIC KEY", n, blk.Type)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		alg, err := keyAlg(k)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		keys = append(keys, publicKey{alg: alg, verifyKey: verifyKey{key: k}})
	}
	if len(keys) == 0 {
		return nil, errors.New(`no PEM "PUBLIC KEY" block found`)
	}
	return keys, nil
}

// jwk is the part of a JSON Web Key (RFC 7517, RFC 8037) Parley reads.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// parseJWKS reads the EC P-256 and OKP Ed25519 signing keys of a key set.
// Other keys (RSA, other curves, encryption keys) are skipped, so a set
// shared with other services still works; a set with no usable key, or a
// usable-looking key that does not decode, is an error.
func parseJWKS(b []byte) ([]publicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JSON key set: %w", err)
	}
	var keys []publicKey
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var (
			key any
			alg string
			err error
		)
		switch {
		case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == "ES256"):
			key, err = ecJWK(k)
			alg = jwt.SigningMethodES256.Alg()
		case k.Kty == "OKP" && k.Crv == "Ed25519" && (k.Alg == "" || k.Alg == "EdDSA" || k.Alg == "Ed25519"):
			key, err = okpJWK(k)
			alg = jwt.SigningMethodEdDSA.Alg()
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
		}
		keys = append(keys, publicKey{alg: alg, verifyKey: verifyKey{kid: k.Kid, key: key}})
	}
	if len(keys) == 0 {
		return nil, errors.New("no EC P-256 (ES256) or OKP Ed25519 (EdDSA) signing key in the set")
	}
	return keys, nil
}

func ecJWK(k jwk) (*ecdsa.PublicKey, error) {
	x, errX := base64.RawURLEncoding.DecodeString(k.X)
	y, errY := base64.RawURLEncoding.DecodeString(k.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("x and y must be 32 bytes each, base64url")
	}
	pt := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		return nil, fmt.Errorf("not a P-256 point: %w", err)
	}
	return pub, nil
}

func okpJWK(k jwk) (ed25519.PublicKey, error) {
	x, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return nil, errors.New("x must be 32 bytes, base64url")
	}
	return ed25519.PublicKey(x), nil
}

// GenerateKey makes a new signing key: AlgEd25519 or AlgES256.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch strings.ToLower(alg) {
	case AlgEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("auth: generate ed25519 key: %w", err)
		}
		return k, nil
	case AlgES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("auth: generate P-256 key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("auth: unknown key algorithm %q (%s or %s)", alg, AlgEd25519, AlgES256)
	}
}

// EncodeKeyPair returns key as a PEM "PRIVATE KEY" (PKCS #8) and its
// public half as a PEM "PUBLIC KEY" (PKIX), the files --key and
// --auth-public-key read.
func EncodeKeyPair(key crypto.Signer) (private, public []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("auth: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// ParsePrivateKey reads a PEM private key MintWithKey can sign with:
// PKCS #8 ("PRIVATE KEY", as openssl genpkey writes) holding a P-256 or
// Ed25519 key, or SEC 1 ("EC PRIVATE KEY", as openssl ecparam writes).
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New(`auth: no PEM "PRIVATE KEY" or "EC PRIVATE KEY" block found`)
		}
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("auth: the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")
		default:
			continue // e.g. "EC PARAMETERS" before the key
		}
		if err != nil {
			return nil, fmt.Errorf("auth: private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("auth: %T keys are not supported (ES256 P-256 or Ed25519)", k)
		}
		if _, err := keyAlg(s.Public()); err != nil {
			return nil, fmt.Errorf("auth: private key: %w", err)
		}
		return s, nil
	}
}
