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
// A stream is an SFU room with one publisher. A second publisher gets 409.
// A viewer who arrives while nothing is published gets 404 ("not live"):
// plain WHEP cannot renegotiate, so accepting and waiting would leave the
// viewer with no tracks. A viewer arriving just after the publisher's POST
// waits (up to Config.TrackWait) for its tracks. When a publisher leaves,
// viewers are kept for a few seconds so a restarting publisher continues
// the same stream for them; after that their sessions end.
//
// Errors are JSON: {"error":{"code":"not_live","message":"stream x is not live"}}.
//
// The wire formats shared with clients (SDP fragments, ICE-server Link
// headers) live in pkg/whip, which is also the Go client.
package whip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

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
	// allows everything. An error means 401.
	Verify func(r *http.Request, stream string, publish bool) error
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
}

// Handler is the WHIP/WHEP http.Handler.
type Handler struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	sessions   map[string]*session
	publishers map[string]*session  // stream -> live WHIP session
	orphans    map[string][]*orphan // stream -> viewers' subscriptions waiting for the publisher to return
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
		cfg.ReattachGrace = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Handler{
		cfg:        cfg,
		log:        log.With("component", "whip"),
		sessions:   map[string]*session{},
		publishers: map[string]*session{},
		orphans:    map[string][]*orphan{},
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
}

var streamRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

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
	codeUnauthorized     = "unauthorized"
	codePrecondition     = "precondition_failed"
	codeInternal         = "internal"
	codeUnavailable      = "unavailable"
)

type errorBody struct {
	Error struct {
		Code      string   `json:"code"`
		Message   string   `json:"message"`
		Offered   []string `json:"offered,omitempty"`
		Supported []string `json:"supported,omitempty"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeErrorBody(w, status, b)
}

func writeErrorBody(w http.ResponseWriter, status int, b errorBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}

func setCORS(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Methods", "OPTIONS, POST, PATCH, DELETE")
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	hd.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post")
}

// ServeHTTP routes WHIP and WHEP requests.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setCORS(w)
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// Accept being mounted with or without a prefix: find "whip"/"whep".
	i := 0
	for i < len(parts) && parts[i] != "whip" && parts[i] != "whep" {
		i++
	}
	parts = parts[min(i, len(parts)):]
	if len(parts) < 2 || len(parts) > 3 {
		writeError(w, http.StatusNotFound, codeNotFound, "no such endpoint; use /whip/{stream} or /whep/{stream}")
		return
	}
	publish := parts[0] == "whip"
	stream := parts[1]
	if !streamRE.MatchString(stream) {
		writeError(w, http.StatusNotFound, codeNotFound, "stream names are 1-64 characters of A-Z a-z 0-9 _ . -")
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
			writeError(w, http.StatusMethodNotAllowed, codeMethod, r.Method+" is not allowed here; POST an SDP offer")
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
		writeError(w, http.StatusMethodNotAllowed, codeMethod, r.Method+" is not allowed on a session; use PATCH or DELETE")
		return
	}
	if sess == nil {
		writeError(w, http.StatusNotFound, codeNotFound, "no such session")
		return
	}
	if err := h.verify(r, stream, publish); err != nil {
		unauthorized(w, err)
		return
	}
	if r.Method == http.MethodDelete {
		sess.part.Close()
		w.WriteHeader(http.StatusOK)
		return
	}
	h.patch(w, r, sess)
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

func (h *Handler) verify(r *http.Request, stream string, publish bool) error {
	if h.cfg.Verify == nil {
		return nil
	}
	return h.cfg.Verify(r, stream, publish)
}

func unauthorized(w http.ResponseWriter, err error) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
	writeError(w, http.StatusUnauthorized, codeUnauthorized, err.Error())
}

// readBody enforces the content type and size limit; it writes the error
// response itself and returns ok=false on failure.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, want string) (string, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		writeError(w, http.StatusUnsupportedMediaType, codeMediaType, fmt.Sprintf("Content-Type must be %s, got %q", want, r.Header.Get("Content-Type")))
		return "", false
	}
	if r.ContentLength > h.cfg.MaxBody {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBody))
		return "", false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBody))
			return "", false
		}
		writeError(w, http.StatusBadRequest, codeBadRequest, "reading body: "+err.Error())
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
		var b errorBody
		b.Error.Code, b.Error.Message = codeUnsupportedCodec, strings.TrimPrefix(ce.Error(), "sfu: ")
		b.Error.Offered, b.Error.Supported = ce.Offered, ce.Supported
		writeErrorBody(w, http.StatusNotAcceptable, b)
	case errors.Is(err, sfu.ErrBadOffer):
		writeError(w, http.StatusBadRequest, codeBadSDP, strings.TrimPrefix(err.Error(), "sfu: "))
	default:
		writeError(w, http.StatusInternalServerError, codeInternal, "negotiation failed: "+err.Error())
	}
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request, stream string, publish bool) {
	if err := h.verify(r, stream, publish); err != nil {
		unauthorized(w, err)
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
	sess := &session{id: newID(), stream: stream, publish: publish, expected: info.Sending, ufrag: offerUfrag(offer)}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "server is shutting down")
		return
	}
	var pub *session
	if publish {
		if h.publishers[stream] != nil {
			h.mu.Unlock()
			writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("stream %s already has a publisher", stream))
			return
		}
		h.publishers[stream] = sess // reserve before the slow part
	} else {
		pub = h.publishers[stream]
	}
	h.mu.Unlock()
	release := func() {
		if publish {
			h.mu.Lock()
			if h.publishers[stream] == sess {
				delete(h.publishers, stream)
			}
			h.mu.Unlock()
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if !publish {
		if !h.live(ctx, stream, pub) {
			writeError(w, http.StatusNotFound, codeNotLive, fmt.Sprintf("stream %s is not live", stream))
			return
		}
	}
	opts := sfu.ParticipantOptions{ID: kindName(publish) + "-" + sess.id, OneShot: true}
	if publish {
		opts.OnPublished = func(ti sfu.TrackInfo) { h.adopt(stream, ti) }
	} else {
		opts.AutoSubscribe = true
		opts.ReceiveOnly = true
		opts.OnSourceEnded = func(ti sfu.TrackInfo) { h.park(stream, sess, ti) }
	}
	part, err := h.cfg.SFU.Join(h.cfg.Namespace, stream, opts)
	if err != nil {
		release()
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "joining stream: "+err.Error())
		return
	}
	sess.part = part
	h.mu.Lock()
	h.sessions[sess.id] = sess
	h.mu.Unlock()
	part.OnClose(func() {
		h.mu.Lock()
		delete(h.sessions, sess.id)
		if h.publishers[stream] == sess {
			delete(h.publishers, stream)
		}
		h.unparkLocked(stream, sess)
		h.mu.Unlock()
		h.log.Info("session ended", "stream", stream, "session", sess.id, "publish", publish)
	})

	answer, err := part.HandleOffer(ctx, offer)
	if err != nil {
		part.Close()
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
// publisher just published: one subscription of the same kind and codec
// per viewer.
func (h *Handler) adopt(stream string, ti sfu.TrackInfo) {
	h.mu.Lock()
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
		writeError(w, http.StatusBadRequest, codeBadSDP, err.Error())
		return
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != sess.etag() {
		writeError(w, http.StatusPreconditionFailed, codePrecondition, "If-Match does not match the session's ETag "+sess.etag())
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
				writeError(w, http.StatusBadRequest, codeBadSDP, "candidate rejected: "+err.Error())
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
		writeError(w, http.StatusBadRequest, codeBadSDP, "ICE restart failed: "+strings.TrimPrefix(err.Error(), "sfu: "))
		return
	}
	sess.mu.Lock()
	sess.ufrag = frag.ICEUfrag
	sess.version++
	sess.mu.Unlock()
	out, err := whipclient.FragFromSDP(local.SDP)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
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
