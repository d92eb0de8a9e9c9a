package show

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/coder/websocket"

	"github.com/parley/parley/internal/httperr"
)

// HTTP error codes (besides the message codes).
const (
	codeNotFound    = "not-found"
	codeBadRequest  = "bad-request"
	codeUnavailable = "unavailable"
	codeMediaType   = "unsupported-media-type"
)

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// authorize runs Options.Verify and writes 401/403 on failure (403
// insufficient_scope for a valid token without the grant, RFC 6750).
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, name string, role Role) bool {
	if r.o.Verify == nil {
		return true
	}
	if err := r.o.Verify(req, name, role); err != nil {
		httperr.Auth(w, err)
		return false
	}
	return true
}

// showName reads and checks the {name} path value.
func showName(w http.ResponseWriter, req *http.Request) (string, bool) {
	name := req.PathValue("name")
	if !ValidName(name) {
		httperr.Write(w, http.StatusNotFound, codeNotFound, "show names are 1-59 characters of A-Z a-z 0-9 _ . -")
		return "", false
	}
	return name, true
}

type hello struct {
	Type       string      `json:"type"`
	Role       Role        `json:"role"`
	Show       string      `json:"show"`
	Stream     string      `json:"stream"`
	ID         string      `json:"id,omitempty"`
	Key        string      `json:"key,omitempty"`
	Epoch      string      `json:"epoch"` // changes when the server restarts
	Palettes   []string    `json:"palettes"`
	ICEServers []ICEServer `json:"iceServers"`
	// AudioLive (screens only) is whether the show's audio is published
	// now; {"type":"air"} says when that changes.
	AudioLive *bool `json:"audio_live,omitempty"`
}

// ServeWS is GET /api/shows/{name}/ws?role=host|screen[&label=..][&key=..][&token=..].
func (r *Registry) ServeWS(w http.ResponseWriter, req *http.Request) {
	name, ok := showName(w, req)
	if !ok {
		return
	}
	q := req.URL.Query()
	role := Role(q.Get("role"))
	if role != RoleHost && role != RoleScreen {
		httperr.Write(w, http.StatusBadRequest, codeBadRequest, `role must be "host" or "screen"`)
		return
	}
	label, key := q.Get("label"), q.Get("key")
	if label != "" {
		if err := checkLabel(label); err != nil {
			httperr.Write(w, http.StatusBadRequest, codeBadRequest, "label: "+err.Error())
			return
		}
	}
	if key != "" && !validID(key) {
		httperr.Write(w, http.StatusBadRequest, codeBadRequest, "key must be 1-32 characters of A-Z a-z 0-9 _ -")
		return
	}
	if o := req.Header.Get("Origin"); !r.o.Origins.Allowed(o) {
		httperr.Write(w, http.StatusForbidden, httperr.CodeForbiddenOrigin, "pages from "+o+" may not use this server (see --public-host and --allow-origins)")
		return
	}
	if !r.authorize(w, req, name, role) {
		return
	}
	sh, err := r.acquire(name)
	if err != nil {
		httperr.Write(w, http.StatusServiceUnavailable, codeUnavailable, err.Error())
		return
	}
	defer r.conns.Done()
	keepRef := false
	defer func() {
		if !keepRef {
			r.release(sh)
		}
	}()
	// The origin is judged above against the server's own names; the
	// library's own check would trust the request's Host header.
	ws, err := websocket.Accept(w, req, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		r.log.Debug("websocket accept", "show", name, "err", err)
		return
	}
	ws.SetReadLimit(2 * MaxMessage) // larger messages close the connection (1009)
	c := newConn(r, ws, role, sh)
	h := hello{Type: TypeHello, Role: role, Show: name, Stream: StreamName(name), Epoch: r.epoch, Palettes: PaletteNames(), ICEServers: []ICEServer{}}
	if r.o.ICEServers != nil {
		if is := r.o.ICEServers(req); is != nil {
			h.ICEServers = is
		}
	}
	if role == RoleHost {
		err = sh.attachHost(c, mustJSON(h))
	} else {
		var graceRef bool
		graceRef, err = sh.attachScreen(c, key, label, func(id, key string, audioLive bool) []byte {
			h.ID, h.Key, h.AudioLive = id, key, &audioLive
			return mustJSON(h)
		})
		if graceRef {
			r.release(sh) // the grace period's reference
		}
	}
	if err != nil {
		code := websocket.StatusTryAgainLater
		if errors.Is(err, errClosed) {
			code = websocket.StatusGoingAway
		}
		_ = ws.Close(code, truncate(err.Error(), 120))
		return
	}
	r.log.Info("show page joined", "show", name, "role", role)
	c.run()
	if role == RoleHost {
		sh.detachHost(c)
	} else {
		keepRef = sh.detachScreen(c)
	}
	r.log.Info("show page left", "show", name, "role", role)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// BroadcastResult is the response of the broadcast endpoint.
type BroadcastResult struct {
	Show      string `json:"show"`
	Delivered int    `json:"delivered"` // screens online that were sent the messages
	Screens   int    `json:"screens"`   // screens in the show (online or reconnecting)
}

// ServeBroadcast is POST /api/shows/{name}/broadcast with a JSON
// Broadcast body. A show nobody has opened answers 200 with 0 delivered.
func (r *Registry) ServeBroadcast(w http.ResponseWriter, req *http.Request) {
	name, ok := showName(w, req)
	if !ok {
		return
	}
	if !r.authorize(w, req, name, RoleControl) {
		return
	}
	// Only JSON: a cross-site page cannot send it without a CORS preflight
	// (which is not granted), so it cannot drive an open server's screens.
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		httperr.Write(w, http.StatusUnsupportedMediaType, codeMediaType, fmt.Sprintf("Content-Type must be application/json, got %q", req.Header.Get("Content-Type")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxMessage))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httperr.Write(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("body exceeds %d bytes", MaxMessage))
			return
		}
		httperr.Write(w, http.StatusBadRequest, CodeBadBody, "reading body: "+err.Error())
		return
	}
	msgs, err := DecodeBroadcast(body)
	if err != nil {
		httperr.Write(w, http.StatusBadRequest, CodeBadBody, err.Error())
		return
	}
	res := BroadcastResult{Show: name}
	if sh := r.lookup(name); sh != nil {
		for _, m := range msgs {
			n, err := sh.apply(m)
			if err != nil {
				httperr.Write(w, http.StatusBadRequest, CodeBadBody, err.Error())
				return
			}
			res.Delivered = max(res.Delivered, n)
		}
		sh.mu.Lock()
		res.Screens = len(sh.screens)
		sh.mu.Unlock()
	}
	writeJSON(w, res)
}

// ServeState is GET /api/shows/{name}: the show's screens, bands, levels
// and mode; 404 when nobody has the show open.
func (r *Registry) ServeState(w http.ResponseWriter, req *http.Request) {
	name, ok := showName(w, req)
	if !ok {
		return
	}
	if !r.authorize(w, req, name, RoleControl) {
		return
	}
	sh := r.lookup(name)
	if sh == nil {
		httperr.Write(w, http.StatusNotFound, codeNotFound, "no show "+name+" is open")
		return
	}
	writeJSON(w, sh.Snapshot())
}
