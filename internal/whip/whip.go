// Package whip serves WHIP ingest (RFC 9725) and WHEP playback
// (draft-ietf-wish-whep) on top of the SFU.
//
// Routes (relative to where the handler is mounted):
//
//	POST   /whip/{stream}            publish: SDP offer in, 201 + SDP answer out
//	POST   /whep/{stream}            play:    SDP offer in, 201 + SDP answer out
//	PATCH  /whip/{stream}/{session}  trickle ICE (204) or ICE restart (200 + sdpfrag)
//	DELETE /whip/{stream}/{session}  end the session (200)
//	(the same for /whep/...), and OPTIONS everywhere for CORS preflight.
//
// A stream is an SFU room with one publisher. A second publisher gets 409
// while the first is connected. A session is pending from its POST until
// its ICE and DTLS have connected; a pending publisher does not reserve the
// stream name: several may be pending at once, the first to connect
// becomes the stream's publisher and the others are dropped (so a client
// that POSTs and never connects cannot squat a name). Each client address
// may hold Config.PendingPerIP pending sessions (429 beyond), and a session
// not connected within Config.ICETimeout is dropped.
//
// A viewer who arrives while nothing is published gets 404 ("not live"):
// plain WHEP cannot renegotiate, so accepting and waiting would leave the
// viewer with no tracks; Config.Demand may first start a source that runs
// on demand (an IP camera) and wait for it. A viewer arriving just after the publisher's POST
// waits (up to Config.TrackWait) for its tracks. When a publisher leaves,
// viewers are kept for a few seconds so a restarting publisher continues
// the same stream for them; after that their sessions end.
//
// Errors are JSON: {"error":{"code":"not_live","message":"stream x is not live"}}.
// A missing or invalid token gets 401, a valid token lacking the grant 403
// "insufficient_scope" (RFC 6750 challenges, see internal/httperr). With
// Config.Authorize, the server's address lists and hooks may then refuse
// a new session: 403 "address_denied" or "hook_refused".
//
// CORS: a browser page may call the endpoints only from an origin the
// Config.Origins policy allows (the server's own names and
// --allow-origins); the answer names that origin, never "*". Other pages
// get 403.
//
// The wire formats shared with clients (SDP fragments, ICE-server Link
// headers) live in pkg/whip, which is also the Go client.
package whip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/clientip"
	"github.com/parley/parley/internal/httperr"
	"github.com/parley/parley/internal/limit"
	"github.com/parley/parley/internal/origin"
	"github.com/parley/parley/internal/sfu"
	whipclient "github.com/parley/parley/pkg/whip"
)

// Config configures the handler.
type Config struct {
	SFU *sfu.SFU
	// Namespace is where the handler's streams live; 0 means sfu.Streams.
	// A second handler serves the light shows' audio in sfu.Shows, so that
	// WHEP on the public endpoint reaches only streams.
	Namespace sfu.Namespace
	// Verify authorizes a request for a stream (publish or play); nil
	// allows everything. An error means 401, or 403 when it wraps
	// httperr.ErrInsufficientScope (a valid token without the grant).
	Verify func(r *http.Request, stream string, publish bool) error
	// Authorize, when set, decides each new session (a POST whose token
	// passed Verify and whose offer is well-formed): the token again, then
	// the server's address lists and hooks. On success end is called once
	// when the session ends (on_done). Its errors are answered by
	// httperr.Auth (401/403).
	Authorize func(r *http.Request, stream string, publish bool, session string) (end func(), err error)
	// Origins are the web pages that may call the endpoints (CORS); nil
	// allows loopback pages only. Requests without Origin (not from a
	// browser page) are not judged.
	Origins *origin.Policy
	// ClientAddr tells which client a request comes from, for the pending
	// limit; nil uses the connection's address.
	ClientAddr func(r *http.Request) netip.Addr
	// PendingPerIP bounds the sessions one client address may have
	// pending (not connected yet); 0 means 10.
	PendingPerIP int
	// ICETimeout is how long a session may take to connect (ICE and
	// DTLS) before it is dropped; 0 means 10 s.
	ICETimeout time.Duration
	// ICEServers lists STUN/TURN servers announced in Link headers.
	ICEServers func(r *http.Request) []webrtc.ICEServer
	// MaxBody bounds request bodies; 0 means 64 KiB.
	MaxBody int64
	// BasePath is prepended to Location headers when the handler is mounted
	// under a stripped prefix (e.g. "/api").
	BasePath string
	// TrackWait is how long a viewer waits for a just-started publisher's
	// tracks; 0 means 3 s.
	TrackWait time.Duration
	// ReattachGrace is how long viewers wait for a publisher to come back;
	// 0 means 5 s.
	ReattachGrace time.Duration
	Logger        *slog.Logger
	// Demand, when set, is called when a viewer asks for a stream nothing
	// publishes: a source that starts on demand (an IP camera) starts and
	// Demand waits, up to ctx, for it to go live; it reports whether it did.
	Demand func(ctx context.Context, stream string) bool
	// Redirect, when set, is asked where a viewer of a stream not live
	// here should go instead (a cluster's origin node, as a base URL):
	// the viewer gets 307 to that URL with the same path and query. It is
	// asked only for a viewer whose token, offer and pending-session
	// limit passed, before Authorize (the hooks see the session once, on
	// the node that serves it); "" serves the viewer here. It bounds its
	// own time.
	Redirect func(ctx context.Context, stream string) string
	// MaxViewers, when set, is the cap on a stream's WHEP viewers (0:
	// unlimited). A viewer past it gets 503 with the code
	// httperr.CodeWebRTCViewerLimit (and Retry-After); viewers still
	// connecting count, so a burst cannot overshoot.
	MaxViewers func(stream string) int

	// onDropped, for tests, is called after a session was dropped for not
	// connecting in time ("timeout") or for losing its stream to a
	// publisher that connected first ("lost").
	onDropped func(reason string)
}

// Handler is the WHIP/WHEP http.Handler.
type Handler struct {
	cfg Config
	log *slog.Logger

	pending *limit.Conns   // pending sessions per client key
	drops   sync.WaitGroup // closings started from connection callbacks; Close waits
	stats   struct {
		refused, timedOut, lost, capped atomic.Uint64
	}

	mu         sync.Mutex
	sessions   map[string]*session
	publishers map[string]*session   // stream -> connected WHIP session
	candidates map[string][]*session // stream -> pending WHIP sessions, oldest first
	orphans    map[string][]*orphan  // stream -> viewers' subscriptions waiting for the publisher to return
	viewers    map[string]int        // stream -> WHEP viewers, from the POST's admission to the session's end
	closed     bool
}

// orphan is a WHEP viewer's subscription whose publisher left. WHEP cannot
// renegotiate, so the viewer keeps its (idle) track for ReattachGrace; a
// publisher that comes back within it continues the same stream for the
// viewer (same SSRC, continuous numbering, from its next keyframe). After
// the grace the viewer's session ends.
type orphan struct {
	sess  *session
	ended sfu.TrackInfo
	timer *time.Timer
}

type session struct {
	id       string
	stream   string
	publish  bool
	part     *sfu.Participant
	expected int // tracks announced by a publisher's offer

	// Guarded by Handler.mu: connected is set once ICE and DTLS are up;
	// until then the session holds a pending slot (unpend) and is dropped
	// when iceTimer fires.
	connected bool
	lost      bool // a publisher dropped because another connected first
	unpend    func()
	iceTimer  *time.Timer

	mu      sync.Mutex
	version int
	ufrag   string // the client's current ICE ufrag
}

func (s *session) etag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%q", s.id+"-"+strconv.Itoa(s.version))
}

// New builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.SFU == nil {
		return nil, errors.New("whip: Config.SFU is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.Namespace == 0 {
		cfg.Namespace = sfu.Streams
	}
	if cfg.TrackWait <= 0 {
		cfg.TrackWait = 3 * time.Second
	}
	if cfg.ReattachGrace <= 0 {
		cfg.ReattachGrace = 15 * time.Second
	}
	if cfg.PendingPerIP <= 0 {
		cfg.PendingPerIP = 10
	}
	if cfg.ICETimeout <= 0 {
		cfg.ICETimeout = 10 * time.Second
	}
	if cfg.Origins == nil {
		cfg.Origins = origin.New(nil, nil)
	}
	if cfg.ClientAddr == nil {
		cfg.ClientAddr = clientip.New(nil).Request
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Handler{
		cfg:        cfg,
		log:        log.With("component", "whip"),
		pending:    limit.NewConns(cfg.PendingPerIP),
		sessions:   map[string]*session{},
		publishers: map[string]*session{},
		candidates: map[string][]*session{},
		orphans:    map[string][]*orphan{},
		viewers:    map[string]int{},
	}, nil
}

// Close ends every WHIP/WHEP session.
func (h *Handler) Close() {
	h.mu.Lock()
	h.closed = true
	for _, list := range h.orphans {
		for _, o := range list {
			o.timer.Stop()
		}
	}
	h.orphans = map[string][]*orphan{}
	ss := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		ss = append(ss, s)
	}
	h.mu.Unlock()
	for _, s := range ss {
		s.part.Close()
	}
	h.drops.Wait()
}

// streamRE: a stream name is 1–64 of [A-Za-z0-9_.-], not starting with a
// dot ("." and ".." would be path steps in URLs and recording folders,
// ".x" a hidden file).
var streamRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$`)

// Error codes of JSON error bodies.
const (
	codeBadRequest       = "bad_request"
	codeBadSDP           = "bad_sdp"
	codeUnsupportedCodec = "unsupported_codec"
	codeNotFound         = "not_found"
	codeNotLive          = "not_live"
	codeConflict         = "conflict"
	codeMethod           = "method_not_allowed"
	codeTooLarge         = "payload_too_large"
	codeMediaType        = "unsupported_media_type"
	codeUnauthorized     = httperr.CodeUnauthorized
	codeForbiddenOrigin  = httperr.CodeForbiddenOrigin
	codePrecondition     = "precondition_failed"
	codeInternal         = "internal"
	codeUnavailable      = "unavailable"
	codeViewerLimit      = httperr.CodeWebRTCViewerLimit
)

// cors admits browser pages of allowed origins, naming the origin in the
// answer; it answers 403 itself and returns false for any other page.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	hd := w.Header()
	hd.Add("Vary", "Origin")
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	if !h.cfg.Origins.Allowed(o) {
		httperr.Write(w, http.StatusForbidden, codeForbiddenOrigin, "pages from "+o+" may not use this server (see --public-host and --allow-origins)")
		return false
	}
	hd.Set("Access-Control-Allow-Origin", o)
	hd.Set("Access-Control-Allow-Methods", "OPTIONS, POST, PATCH, DELETE")
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	hd.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post")
	return true
}

// ServeHTTP routes WHIP and WHEP requests.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.cors(w, r) {
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// Accept being mounted with or without a prefix: find "whip"/"whep".
	i := 0
	for i < len(parts) && parts[i] != "whip" && parts[i] != "whep" {
		i++
	}
	parts = parts[min(i, len(parts)):]
	if len(parts) < 2 || len(parts) > 3 {
		httperr.Write(w, http.StatusNotFound, codeNotFound, "no such endpoint; use /whip/{stream} or /whep/{stream}")
		return
	}
	publish := parts[0] == "whip"
	stream := parts[1]
	if !streamRE.MatchString(stream) {
		httperr.Write(w, http.StatusNotFound, codeNotFound, "stream names are 1-64 characters of A-Z a-z 0-9 _ . -")
		return
	}
	if len(parts) == 2 {
		switch r.Method {
		case http.MethodOptions:
			w.Header().Set("Accept-Post", "application/sdp")
			w.WriteHeader(http.StatusNoContent)
		case http.MethodPost:
			h.post(w, r, stream, publish)
		default:
			w.Header().Set("Allow", "OPTIONS, POST")
			httperr.Write(w, http.StatusMethodNotAllowed, codeMethod, r.Method+" is not allowed here; POST an SDP offer")
		}
		return
	}
	sess := h.lookup(parts[2], stream, publish)
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPatch, http.MethodDelete:
	default:
		w.Header().Set("Allow", "OPTIONS, PATCH, DELETE")
		httperr.Write(w, http.StatusMethodNotAllowed, codeMethod, r.Method+" is not allowed on a session; use PATCH or DELETE")
		return
	}
	if sess == nil {
		httperr.Write(w, http.StatusNotFound, codeNotFound, "no such session")
		return
	}
	if err := h.verify(r, stream, publish); err != nil {
		httperr.Auth(w, err)
		return
	}
	if r.Method == http.MethodDelete {
		sess.part.Close()
		w.WriteHeader(http.StatusOK)
		return
	}
	h.patch(w, r, sess)
}

// Stats counts sessions by how they fared while pending.
type Stats struct {
	Pending  int    // sessions not connected yet
	Refused  uint64 // POSTs refused with 429 (the client had PendingPerIP pending)
	TimedOut uint64 // sessions dropped for not connecting within ICETimeout
	Lost     uint64 // publishers dropped because another connected first
	Capped   uint64 // WHEP viewers refused with 503 past the stream's MaxViewers
}

// Stats returns the current counts.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	n := 0
	for _, s := range h.sessions {
		if !s.connected {
			n++
		}
	}
	h.mu.Unlock()
	return Stats{Pending: n, Refused: h.stats.refused.Load(), TimedOut: h.stats.timedOut.Load(), Lost: h.stats.lost.Load(), Capped: h.stats.capped.Load()}
}

func (h *Handler) lookup(id, stream string, publish bool) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[id]
	if s == nil || s.stream != stream || s.publish != publish {
		return nil
	}
	return s
}

// authorize decides a new session by Config.Authorize, if any.
func (h *Handler) authorize(r *http.Request, stream string, publish bool, id string) (end func(), err error) {
	if h.cfg.Authorize != nil {
		end, err := h.cfg.Authorize(r, stream, publish, id)
		if err != nil {
			return nil, err
		}
		if end == nil {
			end = func() {}
		}
		return end, nil
	}
	return func() {}, nil
}

func (h *Handler) verify(r *http.Request, stream string, publish bool) error {
	if h.cfg.Verify == nil {
		return nil
	}
	return h.cfg.Verify(r, stream, publish)
}

// readBody enforces the content type and size limit; it writes the error
// response itself and returns ok=false on failure.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, want string) (string, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		httperr.Write(w, http.StatusUnsupportedMediaType, codeMediaType, fmt.Sprintf("Content-Type must be %s, got %q", want, r.Header.Get("Content-Type")))
		return "", false
	}
	if r.ContentLength > h.cfg.MaxBody {
		httperr.Write(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBody))
		return "", false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httperr.Write(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBody))
			return "", false
		}
		httperr.Write(w, http.StatusBadRequest, codeBadRequest, "reading body: "+err.Error())
		return "", false
	}
	return string(b), true
}

// CheckOffer validates an offer for publishing (it must send media) or
// playing (it must receive media). It is the pure part of POST handling.
func CheckOffer(offer string, publish bool) (*sfu.OfferInfo, error) {
	if strings.TrimSpace(offer) == "" {
		return nil, fmt.Errorf("%w: empty body", sfu.ErrBadOffer)
	}
	info, err := sfu.ValidateOffer(offer)
	if err != nil {
		return nil, err
	}
	if publish && info.Sending == 0 {
		return nil, fmt.Errorf("%w: a WHIP offer must send audio or video (sendonly/sendrecv)", sfu.ErrBadOffer)
	}
	if !publish && info.Receiving == 0 {
		return nil, fmt.Errorf("%w: a WHEP offer must receive audio or video (recvonly/sendrecv)", sfu.ErrBadOffer)
	}
	return info, nil
}

// offerError maps offer validation and negotiation errors to responses.
func offerError(w http.ResponseWriter, err error) {
	var ce *sfu.CodecError
	switch {
	case errors.As(err, &ce):
		httperr.WriteBody(w, http.StatusNotAcceptable, httperr.Body{Error: httperr.Detail{
			Code: codeUnsupportedCodec, Message: strings.TrimPrefix(ce.Error(), "sfu: "),
			Offered: ce.Offered, Supported: ce.Supported}})
	case errors.Is(err, sfu.ErrBadOffer):
		httperr.Write(w, http.StatusBadRequest, codeBadSDP, strings.TrimPrefix(err.Error(), "sfu: "))
	default:
		httperr.Write(w, http.StatusInternalServerError, codeInternal, "negotiation failed: "+err.Error())
	}
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request, stream string, publish bool) {
	if err := h.verify(r, stream, publish); err != nil { // the token first: 401/403 before anything else
		httperr.Auth(w, err)
		return
	}
	offer, ok := h.readBody(w, r, "application/sdp")
	if !ok {
		return
	}
	info, err := CheckOffer(offer, publish)
	if err != nil {
		offerError(w, err)
		return
	}
	unpend, ok := h.pending.Acquire(clientip.Key(h.cfg.ClientAddr(r)))
	if !ok {
		h.stats.refused.Add(1)
		httperr.TooMany(w, h.cfg.ICETimeout, fmt.Sprintf("this address has %d sessions still connecting; wait until they connect or end", h.cfg.PendingPerIP))
		return
	}
	if !publish && h.cfg.Redirect != nil && !h.live(r.Context(), stream, nil) {
		if to := h.cfg.Redirect(r.Context(), stream); to != "" {
			unpend()
			http.Redirect(w, r, to+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
	}
	// A well-formed offer within the limits: now the address lists and
	// hooks (Authorize), which see each session once.
	id := newID()
	end, err := h.authorize(r, stream, publish, id)
	if err != nil {
		unpend()
		httperr.Auth(w, err)
		return
	}
	handedOff := false // once the session's OnClose owns end (and a viewer's seat)
	defer func() {
		if !handedOff {
			end()
		}
	}()
	sess := &session{id: id, stream: stream, publish: publish, expected: info.Sending, ufrag: offerUfrag(offer), unpend: unpend}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		unpend()
		httperr.Write(w, http.StatusServiceUnavailable, codeUnavailable, "server is shutting down")
		return
	}
	if !publish && !h.admitViewerLocked(stream) {
		h.mu.Unlock()
		unpend()
		h.stats.capped.Add(1)
		w.Header().Set("Retry-After", "5")
		httperr.Write(w, http.StatusServiceUnavailable, codeViewerLimit,
			fmt.Sprintf("stream %s has all the WebRTC viewers it takes (%d); watch it over HLS or try again later", stream, h.cfg.MaxViewers(stream)))
		return
	}
	admitted := !publish // the viewer's seat, given back by leave unless the session's OnClose owns it
	leave := func() {
		if admitted {
			admitted = false
			h.mu.Lock()
			h.leaveViewerLocked(stream)
			h.mu.Unlock()
		}
	}
	defer func() {
		if !handedOff {
			leave()
		}
	}()
	pub := h.publishers[stream]
	if publish {
		if pub != nil {
			h.mu.Unlock()
			unpend()
			httperr.Write(w, http.StatusConflict, codeConflict, fmt.Sprintf("stream %s already has a publisher", stream))
			return
		}
		// A candidate until it connects: it reserves nothing.
		h.candidates[stream] = append(h.candidates[stream], sess)
	} else if pub == nil {
		if c := h.candidates[stream]; len(c) > 0 {
			pub = c[len(c)-1] // a viewer right after the publisher's POST waits for its tracks
		}
	}
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if !publish {
		if pub == nil && h.cfg.Demand != nil && !h.live(ctx, stream, nil) {
			h.cfg.Demand(ctx, stream)
		}
		if !h.live(ctx, stream, pub) {
			unpend()
			httperr.Write(w, http.StatusNotFound, codeNotLive, fmt.Sprintf("stream %s is not live", stream))
			return
		}
	}
	opts := sfu.ParticipantOptions{ID: kindName(publish) + "-" + sess.id, OneShot: true}
	if publish {
		opts.OnPublished = func(ti sfu.TrackInfo) { h.adopt(sess, ti) }
	} else {
		opts.AutoSubscribe = true
		opts.ReceiveOnly = true
		opts.OnSourceEnded = func(ti sfu.TrackInfo) { h.park(stream, sess, ti) }
	}
	part, err := h.cfg.SFU.Join(h.cfg.Namespace, stream, opts)
	if err != nil {
		h.mu.Lock()
		h.forgetLocked(sess)
		h.mu.Unlock()
		unpend()
		httperr.Write(w, http.StatusServiceUnavailable, codeUnavailable, "joining stream: "+err.Error())
		return
	}
	h.mu.Lock()
	sess.part = part
	lost := sess.lost // another publisher connected while this one joined
	if !lost {
		h.sessions[sess.id] = sess
		sess.iceTimer = time.AfterFunc(h.cfg.ICETimeout, func() { h.dropIfPending(sess) })
	}
	h.mu.Unlock()
	if lost {
		part.Close()
		unpend()
		httperr.Write(w, http.StatusConflict, codeConflict, fmt.Sprintf("stream %s already has a publisher", stream))
		return
	}
	part.OnClose(func() {
		h.mu.Lock()
		sess.iceTimer.Stop()
		h.forgetLocked(sess)
		h.unparkLocked(stream, sess)
		h.mu.Unlock()
		leave()
		sess.unpend()
		h.log.Info("session ended", "stream", stream, "session", sess.id, "publish", publish)
		end()
	})
	handedOff = true
	dtls := part.PeerConnection().SCTP().Transport()
	dtls.OnStateChange(func(st webrtc.DTLSTransportState) {
		if st == webrtc.DTLSTransportStateConnected {
			h.connected(sess)
		}
	})

	answer, err := part.HandleOffer(ctx, offer)
	if err != nil {
		part.Close()
		h.mu.Lock()
		lost := sess.lost
		h.mu.Unlock()
		if lost {
			httperr.Write(w, http.StatusConflict, codeConflict, fmt.Sprintf("stream %s already has a publisher", stream))
			return
		}
		offerError(w, err)
		return
	}
	h.log.Info("session started", "stream", stream, "session", sess.id, "publish", publish)
	hd := w.Header()
	hd.Set("Content-Type", "application/sdp")
	hd.Set("Location", h.cfg.BasePath+mountPrefix(r.URL.Path)+"/"+kindName(publish)+"/"+stream+"/"+sess.id)
	hd.Set("ETag", sess.etag())
	hd.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	if h.cfg.ICEServers != nil {
		for _, l := range whipclient.LinkHeaders(h.cfg.ICEServers(r)) {
			hd.Add("Link", l)
		}
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// connected ends a session's pending time. For a publisher it is the
// moment the stream is taken: the first candidate to connect becomes the
// publisher and the other candidates are dropped; one connecting after
// another publisher took the stream is dropped itself.
func (h *Handler) connected(sess *session) {
	var drop []*session
	h.mu.Lock()
	if sess.connected || h.sessions[sess.id] != sess {
		h.mu.Unlock()
		return
	}
	sess.connected = true
	sess.iceTimer.Stop()
	if sess.publish {
		if cur := h.publishers[sess.stream]; cur != nil {
			sess.lost = true
			drop = append(drop, sess)
		} else {
			h.publishers[sess.stream] = sess
			for _, c := range h.candidates[sess.stream] {
				if c != sess {
					c.lost = true
					if c.part != nil { // else post sees lost once it has joined
						drop = append(drop, c)
					}
				}
			}
			delete(h.candidates, sess.stream)
		}
	}
	if len(drop) > 0 && !h.closed { // Close ends every session itself
		// Not inline: this runs in pion's DTLS callback, which must not
		// wait for its own connection to close.
		h.drops.Add(1)
		go func() {
			defer h.drops.Done()
			for _, d := range drop {
				h.stats.lost.Add(1)
				h.log.Info("another publisher took the stream first; dropping this one", "stream", d.stream, "session", d.id)
				d.part.Close()
				if h.cfg.onDropped != nil {
					h.cfg.onDropped("lost")
				}
			}
		}()
	}
	h.mu.Unlock()
	sess.unpend()
}

// admitViewerLocked takes a viewer's seat on stream, unless the stream's
// MaxViewers are all taken.
func (h *Handler) admitViewerLocked(stream string) bool {
	if h.cfg.MaxViewers != nil {
		if n := h.cfg.MaxViewers(stream); n > 0 && h.viewers[stream] >= n {
			return false
		}
	}
	h.viewers[stream]++
	return true
}

// leaveViewerLocked gives a viewer's seat on stream back.
func (h *Handler) leaveViewerLocked(stream string) {
	if h.viewers[stream]--; h.viewers[stream] <= 0 {
		delete(h.viewers, stream)
	}
}

// dropIfPending closes a session that has not connected in ICETimeout.
func (h *Handler) dropIfPending(sess *session) {
	h.mu.Lock()
	drop := !sess.connected && h.sessions[sess.id] == sess
	h.mu.Unlock()
	if !drop {
		return
	}
	h.stats.timedOut.Add(1)
	h.log.Info("session did not connect in time; dropping it", "stream", sess.stream, "session", sess.id, "publish", sess.publish, "timeout", h.cfg.ICETimeout)
	sess.part.Close()
	if h.cfg.onDropped != nil {
		h.cfg.onDropped("timeout")
	}
}

// forgetLocked removes a session from the tables.
func (h *Handler) forgetLocked(sess *session) {
	if h.sessions[sess.id] == sess {
		delete(h.sessions, sess.id)
	}
	if h.publishers[sess.stream] == sess {
		delete(h.publishers, sess.stream)
	}
	list := h.candidates[sess.stream]
	for i, c := range list {
		if c == sess {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(h.candidates, sess.stream)
	} else {
		h.candidates[sess.stream] = list
	}
}

// park keeps a viewer's ended subscription for ReattachGrace; the viewer's
// session ends if the publisher has not come back by then.
func (h *Handler) park(stream string, sess *session, ended sfu.TrackInfo) {
	o := &orphan{sess: sess, ended: ended}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		go sess.part.Close()
		return
	}
	o.timer = time.AfterFunc(h.cfg.ReattachGrace, func() {
		h.mu.Lock()
		found := h.removeOrphanLocked(stream, o)
		h.mu.Unlock()
		if found {
			h.log.Info("publisher did not come back; closing viewer", "stream", stream, "session", sess.id)
			sess.part.Close()
		}
	})
	h.orphans[stream] = append(h.orphans[stream], o)
}

// adopt re-attaches waiting viewers to a track the stream's (new)
// publisher pub just published: one subscription of the same kind and codec
// per viewer.
func (h *Handler) adopt(pub *session, ti sfu.TrackInfo) {
	stream := pub.stream
	h.mu.Lock()
	if h.publishers[stream] != pub {
		h.mu.Unlock() // a publisher that lost the stream, being dropped
		return
	}
	var take []*orphan
	seen := map[*session]bool{}
	keep := h.orphans[stream][:0]
	for _, o := range h.orphans[stream] {
		if !seen[o.sess] && o.ended.Kind == ti.Kind && strings.EqualFold(o.ended.Codec, ti.Codec) {
			seen[o.sess] = true
			o.timer.Stop()
			take = append(take, o)
			continue
		}
		keep = append(keep, o)
	}
	h.setOrphansLocked(stream, keep)
	h.mu.Unlock()
	for _, o := range take {
		if err := o.sess.part.Reattach(o.ended.ID, ti.ID); err != nil {
			h.log.Info("viewer cannot continue on the new track; closing it", "stream", stream, "session", o.sess.id, "err", err)
			o.sess.part.Close()
		}
	}
}

func (h *Handler) removeOrphanLocked(stream string, o *orphan) bool {
	list := h.orphans[stream]
	for i, x := range list {
		if x == o {
			h.setOrphansLocked(stream, append(list[:i:i], list[i+1:]...))
			return true
		}
	}
	return false
}

// unparkLocked forgets a closed viewer's orphans.
func (h *Handler) unparkLocked(stream string, sess *session) {
	keep := h.orphans[stream][:0]
	for _, o := range h.orphans[stream] {
		if o.sess == sess {
			o.timer.Stop()
			continue
		}
		keep = append(keep, o)
	}
	h.setOrphansLocked(stream, keep)
}

func (h *Handler) setOrphansLocked(stream string, list []*orphan) {
	if len(list) == 0 {
		delete(h.orphans, stream)
		return
	}
	h.orphans[stream] = list
}

// live reports whether a stream has (or is about to have) tracks; a viewer
// arriving right after the publisher's POST waits for the announced tracks.
func (h *Handler) live(ctx context.Context, stream string, pub *session) bool {
	room, ok := h.cfg.SFU.LookupRoom(h.cfg.Namespace, stream)
	if !ok {
		return false
	}
	if pub == nil {
		return len(room.Tracks()) > 0
	}
	wctx, cancel := context.WithTimeout(ctx, h.cfg.TrackWait)
	defer cancel()
	return room.WaitTracks(wctx, pub.expected) > 0
}

// mountPrefix is the part of a request path before "/whip/" or "/whep/",
// so Location works wherever the handler is mounted.
func mountPrefix(path string) string {
	for _, k := range []string{"/whip/", "/whep/"} {
		if i := strings.Index(path, k); i >= 0 {
			return path[:i]
		}
	}
	return ""
}

func kindName(publish bool) string {
	if publish {
		return "whip"
	}
	return "whep"
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// patch handles trickle candidates and ICE restarts.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request, sess *session) {
	body, ok := h.readBody(w, r, "application/trickle-ice-sdpfrag")
	if !ok {
		return
	}
	frag, err := whipclient.ParseSDPFrag(body)
	if err != nil {
		httperr.Write(w, http.StatusBadRequest, codeBadSDP, err.Error())
		return
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != sess.etag() {
		httperr.Write(w, http.StatusPreconditionFailed, codePrecondition, "If-Match does not match the session's ETag "+sess.etag())
		return
	}
	sess.mu.Lock()
	restart := frag.ICEUfrag != "" && frag.ICEUfrag != sess.ufrag
	sess.mu.Unlock()
	if restart {
		h.restart(w, r, sess, frag)
		return
	}
	for _, m := range frag.Media {
		for _, c := range m.Candidates {
			mid := m.Mid
			init := webrtc.ICECandidateInit{Candidate: "candidate:" + c}
			if mid != "" {
				init.SDPMid = &mid
			} else {
				zero := uint16(0)
				init.SDPMLineIndex = &zero
			}
			if err := sess.part.AddICECandidate(init); err != nil {
				httperr.Write(w, http.StatusBadRequest, codeBadSDP, "candidate rejected: "+err.Error())
				return
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) restart(w http.ResponseWriter, r *http.Request, sess *session, frag whipclient.SDPFrag) {
	var cands []string
	for _, m := range frag.Media {
		cands = append(cands, m.Candidates...)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	local, err := sess.part.RestartICE(ctx, frag.ICEUfrag, frag.ICEPwd, cands)
	if err != nil {
		httperr.Write(w, http.StatusBadRequest, codeBadSDP, "ICE restart failed: "+strings.TrimPrefix(err.Error(), "sfu: "))
		return
	}
	sess.mu.Lock()
	sess.ufrag = frag.ICEUfrag
	sess.version++
	sess.mu.Unlock()
	out, err := whipclient.FragFromSDP(local.SDP)
	if err != nil {
		httperr.Write(w, http.StatusInternalServerError, codeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/trickle-ice-sdpfrag")
	w.Header().Set("ETag", sess.etag())
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, out.String())
}

// offerUfrag returns the first ice-ufrag of an SDP.
func offerUfrag(offer string) string {
	for _, line := range strings.Split(offer, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// ValidStream reports whether name is a valid stream name (what WHIP, WHEP
// and every other ingest accept): 1–64 of [A-Za-z0-9_.-], not starting
// with a dot.
func ValidStream(name string) bool { return streamRE.MatchString(name) }

// ErrBusy is returned by ClaimStream while the stream has a publisher.
var ErrBusy = errors.New("stream already has a publisher")

// External is a publisher of a stream from outside WHIP (RTMP, later RTSP
// and SRT): it holds the stream name against WHIP publishers and other
// external ones, and WHEP viewers waiting for the stream's return continue
// on its tracks.
type External struct {
	h    *Handler
	sess *session
	once sync.Once
}

// ClaimStream takes stream for an external publisher announcing tracks
// tracks; it fails with ErrBusy while another publisher holds it. The
// caller publishes into the SFU, calls Published for each track, and
// Release when it goes.
func (h *Handler) ClaimStream(stream string, tracks int) (*External, error) {
	sess := &session{id: newID(), stream: stream, publish: true, connected: true, expected: tracks, unpend: func() {}}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("whip: server is shutting down")
	}
	if h.publishers[stream] != nil {
		return nil, fmt.Errorf("%s: %w", stream, ErrBusy)
	}
	h.publishers[stream] = sess
	return &External{h: h, sess: sess}, nil
}

// Published re-attaches WHEP viewers waiting for the stream to this track.
func (e *External) Published(ti sfu.TrackInfo) { e.h.adopt(e.sess, ti) }

// Release frees the stream name; extra calls do nothing.
func (e *External) Release() {
	e.once.Do(func() {
		e.h.mu.Lock()
		e.h.forgetLocked(e.sess)
		e.h.mu.Unlock()
	})
}
