package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parley/parley/internal/auth"
)

func mintToken(secret, roomPat, identity, grantList string, ttl time.Duration) (string, error) {
	var errs []error
	if secret == "" {
		errs = append(errs, errors.New("--auth-secret (or PARLEY_AUTH_SECRET) is required"))
	}
	if roomPat == "" {
		errs = append(errs, errors.New("--room is required"))
	}
	if identity == "" {
		errs = append(errs, errors.New("--identity is required"))
	}
	if ttl <= 0 {
		errs = append(errs, errors.New("--ttl must be positive"))
	}
	var g auth.Grants
	for _, name := range strings.Split(grantList, ",") {
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
	return auth.NewToken([]byte(secret), roomPat, identity, g, ttl, time.Now())
}
