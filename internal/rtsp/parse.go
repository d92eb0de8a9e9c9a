package rtsp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
)

// streamName takes the stream from a request path: "/<stream>" (the
// library has already cut the query, a trailing slash and, for SETUP,
// the track's control part).
func streamName(path string, valid func(string) bool) (string, error) {
	name := strings.TrimPrefix(path, "/")
	if name == "" || strings.Contains(name, "/") || !valid(name) {
		return "", fmt.Errorf("rtsp://host:port/<stream> with a stream name of 1-64 of A-Z a-z 0-9 _ . -, not %q", path)
	}
	return name, nil
}

// errBadCredentials is an Authorization header that cannot be read.
var errBadCredentials = errors.New("unreadable Authorization header (use Basic: rtsp://user:<token>@host/<stream>)")

// credentials takes the token from a request: the query's token=, else
// the password of Basic credentials in the Authorization header (ffmpeg
// cuts URL credentials to 127 bytes, too short for most tokens: it needs
// ?token=). given tells whether any were sent.
func credentials(h base.HeaderValue, query string) (token string, given bool, err error) {
	if q, err := url.ParseQuery(query); err == nil && q.Get("token") != "" {
		return q.Get("token"), true, nil
	}
	if len(h) == 0 {
		return "", false, nil
	}
	var a headers.Authorization
	if err := a.Unmarshal(h); err != nil {
		return "", true, errBadCredentials
	}
	if a.Method != headers.AuthMethodBasic {
		return "", true, errBadCredentials
	}
	return a.BasicPass, true, nil
}
