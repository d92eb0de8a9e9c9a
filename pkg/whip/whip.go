// Package whip is a Go client for WHIP ingest (RFC 9725) and WHEP
// playback (draft-ietf-wish-whep), on pion/webrtc.
//
// Publish sends tracks to a WHIP endpoint; Play receives a stream from a
// WHEP endpoint. Both POST an SDP offer, apply the answer and return a
// Session, whose Location is the resource the server created: candidates
// gathered after the offer (Options.Trickle) and ICE restarts go there as
// PATCH requests with application/trickle-ice-sdpfrag bodies, and Close
// ends it with DELETE. Servers' ICE servers come in Link headers (see
// Session.ICEServers).
//
// A server's refusal is an *HTTPError carrying the HTTP status and, from
// a JSON body {"error":{"code":..,"message":..}}, the code and message:
//
//	var he *whip.HTTPError
//	if errors.As(err, &he) && he.Status == http.StatusNotFound { ... }
//
// The package also holds the wire formats a server shares with its
// clients: SDP fragments (ParseSDPFrag, SDPFrag.String) and ICE-server
// Link headers (LinkHeaders, ParseLinkHeaders).
package whip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Options tune Publish and Play. The zero value works: pion's default
// codecs and interceptors, complete (non-trickle) offers, and
// http.DefaultClient.
type Options struct {
	// Token, if set, is sent as "Authorization: Bearer <Token>" on every
	// request of the session.
	Token string
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client

	// API builds the PeerConnection. When nil, one is built from pion's
	// default codecs, SettingEngine (if set) and Interceptors.
	API *webrtc.API
	// SettingEngine is used when API is nil (e.g. to gather loopback
	// candidates for a server on the same machine).
	SettingEngine *webrtc.SettingEngine
	// Interceptors is used when API is nil; nil registers pion's default
	// interceptors (NACK, RTCP reports, TWCC) as a browser would. An empty
	// registry gives a bare PeerConnection.
	Interceptors *interceptor.Registry
	// Configuration is the PeerConnection's configuration (ICE servers,
	// transport policy).
	Configuration webrtc.Configuration

	// Trickle sends the offer at once, before ICE gathering ends, and the
	// candidates in PATCH requests as they are found. Otherwise the offer
	// carries every candidate and no PATCH is needed.
	Trickle bool

	// Kinds are the media kinds Play receives, one recvonly transceiver
	// each; nil means video and audio.
	Kinds []webrtc.RTPCodecType
	// OnTrack is called for each track Play receives; the callback owns
	// reading it. When nil, received tracks are read and discarded so
	// interceptors still see them.
	OnTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
	// OnRTCP receives the RTCP packets that reach a published track's
	// sender (PLI, NACK, receiver reports) after the interceptors; nil
	// discards them. Publish always reads them, as interceptors need.
	OnRTCP func(*webrtc.RTPSender, []rtcp.Packet)
}

// HTTPError is a server's refusal of a request.
type HTTPError struct {
	Status  int    // HTTP status code
	Code    string // the JSON error code, e.g. "not_live"; "" if none
	Message string // the JSON error message, or the body's text
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("whip: %d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// httpError builds the error of a response with an unexpected status.
func httpError(resp *http.Response) *HTTPError {
	e := &HTTPError{Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &b) == nil && (b.Error.Code != "" || b.Error.Message != "") {
		e.Code, e.Message = b.Error.Code, b.Error.Message
	} else {
		e.Message = strings.TrimSpace(string(body))
	}
	return e
}

// Session is one WHIP or WHEP session.
type Session struct {
	pc       *webrtc.PeerConnection
	opts     Options
	hc       *http.Client
	location string
	servers  []webrtc.ICEServer

	connected chan struct{}
	failed    chan struct{}
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	etag    string
	offer   string // the current local offer (its ufrag, pwd, first m-line)
	answer  string // the current remote answer
	pending []string
	eoc     bool // gathering ended: send a=end-of-candidates
	restart bool // an ICE restart sends its own candidates: trickle no more
	kick    chan struct{}
}

// Publish sends tracks to the WHIP endpoint url, one sendonly transceiver
// each. ctx bounds the negotiation, not the session.
func Publish(ctx context.Context, url string, opts Options, tracks ...webrtc.TrackLocal) (*Session, error) {
	if len(tracks) == 0 {
		return nil, errors.New("whip: Publish needs at least one track")
	}
	s, err := newSession(opts)
	if err != nil {
		return nil, err
	}
	for _, tr := range tracks {
		t, err := s.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = s.pc.Close()
			return nil, fmt.Errorf("whip: add track: %w", err)
		}
		sender := t.Sender()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				if opts.OnRTCP != nil {
					opts.OnRTCP(sender, pkts)
				}
			}
		}()
	}
	if err := s.negotiate(ctx, url); err != nil {
		s.shutdown()
		return nil, err
	}
	return s, nil
}

// Play receives the stream at the WHEP endpoint url. ctx bounds the
// negotiation, not the session.
func Play(ctx context.Context, url string, opts Options) (*Session, error) {
	s, err := newSession(opts)
	if err != nil {
		return nil, err
	}
	kinds := opts.Kinds
	if kinds == nil {
		kinds = []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}
	}
	if len(kinds) == 0 {
		_ = s.pc.Close()
		return nil, errors.New("whip: Play needs at least one media kind")
	}
	for _, k := range kinds {
		if _, err := s.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = s.pc.Close()
			return nil, fmt.Errorf("whip: add %s transceiver: %w", k, err)
		}
	}
	s.pc.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		if opts.OnTrack != nil {
			opts.OnTrack(tr, r)
			return
		}
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
		}
	})
	if err := s.negotiate(ctx, url); err != nil {
		s.shutdown()
		return nil, err
	}
	return s, nil
}

func newSession(opts Options) (*Session, error) {
	api := opts.API
	if api == nil {
		me := &webrtc.MediaEngine{}
		if err := me.RegisterDefaultCodecs(); err != nil {
			return nil, fmt.Errorf("whip: codecs: %w", err)
		}
		ir := opts.Interceptors
		if ir == nil {
			ir = &interceptor.Registry{}
			if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
				return nil, fmt.Errorf("whip: interceptors: %w", err)
			}
		}
		o := []func(*webrtc.API){webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir)}
		if opts.SettingEngine != nil {
			o = append(o, webrtc.WithSettingEngine(*opts.SettingEngine))
		}
		api = webrtc.NewAPI(o...)
	}
	pc, err := api.NewPeerConnection(opts.Configuration)
	if err != nil {
		return nil, fmt.Errorf("whip: peer connection: %w", err)
	}
	s := &Session{pc: pc, opts: opts, hc: opts.HTTPClient, connected: make(chan struct{}), failed: make(chan struct{}),
		done: make(chan struct{}), kick: make(chan struct{}, 1)}
	if s.hc == nil {
		s.hc = http.DefaultClient
	}
	var conn, fail sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			conn.Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			fail.Do(func() { close(s.failed) })
		}
	})
	return s, nil
}

// negotiate POSTs the offer, applies the answer, and starts trickling.
func (s *Session) negotiate(ctx context.Context, endpoint string) error {
	if s.opts.Trickle {
		s.pc.OnICECandidate(s.onCandidate)
	}
	offer, err := s.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("whip: offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("whip: set offer: %w", err)
	}
	body := offer.SDP
	if !s.opts.Trickle {
		select {
		case <-gathered:
		case <-ctx.Done():
			return ctx.Err()
		}
		body = s.pc.LocalDescription().SDP
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("whip: %w", err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	s.authorize(req)
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("whip: POST: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return httpError(resp)
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("whip: reading the answer: %w", err)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return errors.New("whip: the server sent no Location")
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("whip: %w", err)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("whip: bad Location %q: %w", loc, err)
	}
	s.location = base.ResolveReference(ref).String()
	s.servers = ParseLinkHeaders(resp.Header.Values("Link"))
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		// The server made a session: end it.
		s.deleteResource(context.WithoutCancel(ctx))
		return fmt.Errorf("whip: set answer: %w", err)
	}
	s.mu.Lock()
	s.etag, s.offer, s.answer = resp.Header.Get("ETag"), offer.SDP, string(answer)
	s.mu.Unlock()
	if s.opts.Trickle {
		s.wg.Add(1)
		go s.trickle()
	}
	return nil
}

func (s *Session) authorize(req *http.Request) {
	if s.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.opts.Token)
	}
}

// PeerConnection is the session's PeerConnection.
func (s *Session) PeerConnection() *webrtc.PeerConnection { return s.pc }

// Location is the absolute URL of the session's resource on the server.
func (s *Session) Location() string { return s.location }

// ETag is the session's current entity tag (it changes on ICE restart).
func (s *Session) ETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

// ICEServers are the STUN/TURN servers the server announced in Link
// headers. The PeerConnection was built before they were known: a caller
// that needs them (e.g. to relay through TURN) can build its next
// session's Options.Configuration from them.
func (s *Session) ICEServers() []webrtc.ICEServer { return s.servers }

// WaitConnected waits until the PeerConnection is connected; it fails if
// the connection fails or closes first, or when ctx ends.
func (s *Session) WaitConnected(ctx context.Context) error {
	select {
	case <-s.connected:
		return nil
	case <-s.failed:
		return errors.New("whip: the connection failed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onCandidate queues a gathered candidate for the trickle PATCHes.
func (s *Session) onCandidate(c *webrtc.ICECandidate) {
	s.mu.Lock()
	if s.restart {
		s.mu.Unlock()
		return
	}
	if c == nil {
		s.eoc = true
	} else {
		s.pending = append(s.pending, strings.TrimPrefix(c.ToJSON().Candidate, "candidate:"))
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// trickle sends queued candidates, one PATCH per batch, until gathering
// ends or the session closes. A refused PATCH is not fatal: ICE may still
// connect with the candidates the server has.
func (s *Session) trickle() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		cands, eoc := s.pending, s.eoc
		s.pending = nil
		s.mu.Unlock()
		if len(cands) > 0 || eoc {
			frag, err := s.fragment(cands, eoc)
			if err == nil {
				ctx, cancel := context.WithCancel(context.Background())
				go func() {
					select {
					case <-s.done:
						cancel()
					case <-ctx.Done():
					}
				}()
				_, _ = s.patch(ctx, frag)
				cancel()
			}
			if eoc {
				return
			}
		}
		select {
		case <-s.kick:
		case <-s.done:
			return
		}
	}
}

// fragment builds the sdpfrag of candidates for the current offer.
func (s *Session) fragment(cands []string, eoc bool) (SDPFrag, error) {
	s.mu.Lock()
	offer := s.offer
	s.mu.Unlock()
	f, err := FragFromSDP(offer)
	if err != nil {
		return f, err
	}
	if len(f.Media) == 0 {
		return f, errors.New("whip: the offer has no media section")
	}
	f.Media[0].Candidates, f.Media[0].EndOfCandidates = cands, eoc
	return f, nil
}

// patch sends an sdpfrag to the session and returns the response body
// (an ICE restart's answer).
func (s *Session) patch(ctx context.Context, f SDPFrag) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, s.location, strings.NewReader(f.String()))
	if err != nil {
		return "", fmt.Errorf("whip: %w", err)
	}
	req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	if et := s.ETag(); et != "" {
		req.Header.Set("If-Match", et)
	}
	s.authorize(req)
	resp, err := s.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("whip: PATCH: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return "", httpError(resp)
	}
	if et := resp.Header.Get("ETag"); et != "" {
		s.mu.Lock()
		s.etag = et
		s.mu.Unlock()
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b), err
}

// RestartICE restarts ICE: it gathers with new credentials, PATCHes them
// with every candidate (RFC 9725 section 4.4.2) and applies the server's
// new credentials and candidates from the response.
func (s *Session) RestartICE(ctx context.Context) error {
	s.mu.Lock()
	s.restart, s.pending = true, nil
	s.mu.Unlock()
	offer, err := s.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return fmt.Errorf("whip: restart offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("whip: set restart offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	}
	local := s.pc.LocalDescription().SDP
	frag, err := FragFromSDP(local)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.offer = local
	answer := s.answer
	s.mu.Unlock()
	body, err := s.patch(ctx, frag)
	if err != nil {
		return err
	}
	remote, err := ParseSDPFrag(body)
	if err != nil {
		return fmt.Errorf("whip: restart answer: %w", err)
	}
	if remote.ICEUfrag == "" {
		return errors.New("whip: the restart answer has no ICE credentials")
	}
	newAnswer := restartedAnswer(answer, remote)
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: newAnswer}); err != nil {
		return fmt.Errorf("whip: set restart answer: %w", err)
	}
	s.mu.Lock()
	s.answer = newAnswer
	s.mu.Unlock()
	return nil
}

// restartedAnswer is the previous answer with the server's new ICE
// credentials and candidates (on the first media section, which carries
// the bundle's transport).
func restartedAnswer(answer string, f SDPFrag) string {
	lines := strings.Split(strings.ReplaceAll(answer, "\r\n", "\n"), "\n")
	var out []string
	media := -1
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "m="):
			media++
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			l = "a=ice-ufrag:" + f.ICEUfrag
		case strings.HasPrefix(l, "a=ice-pwd:"):
			l = "a=ice-pwd:" + f.ICEPwd
		case strings.HasPrefix(l, "a=candidate:"), l == "a=end-of-candidates":
			continue
		}
		out = append(out, l)
		if strings.HasPrefix(l, "m=") && media == 0 {
			for _, m := range f.Media {
				for _, c := range m.Candidates {
					out = append(out, "a=candidate:"+c)
				}
			}
			out = append(out, "a=end-of-candidates")
		}
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

// Close ends the session: DELETE on its Location (bounded by ctx), then
// the PeerConnection closes. The DELETE's failure is returned; the
// PeerConnection is closed either way.
func (s *Session) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.deleteResource(ctx)
		if cerr := s.pc.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("whip: close: %w", cerr)
		}
		s.wg.Wait()
	})
	return err
}

// shutdown closes a session whose negotiation failed.
func (s *Session) shutdown() {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.pc.Close()
		s.wg.Wait()
	})
}

func (s *Session) deleteResource(ctx context.Context) error {
	if s.location == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location, nil)
	if err != nil {
		return fmt.Errorf("whip: %w", err)
	}
	s.authorize(req)
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("whip: DELETE: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return httpError(resp)
	}
	return nil
}
