// Subscriptions: published tracks in, down-tracks out, and their counters.
package sfu

import (
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// onTrack registers a published stream (a simulcast layer joins the track
// of its receiver).
func (p *Participant) onTrack(remote *webrtc.TrackRemote, rec *webrtc.RTPReceiver) {
	if p.noPublish {
		// Not published: nobody reads it, so pion drops its packets.
		p.log.Warn("track refused: no publish grant", "track", remote.ID(), "rid", remote.RID())
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	up, exists := p.ups[rec]
	if !exists {
		up = newUpTrack(p.room, p, remote.ID(), remote.StreamID(), publisherCodec(remote.Codec(), rec.GetParameters().Codecs))
		p.ups[rec] = up
	}
	p.mu.Unlock()
	p.log.Info("track published", "track", up.id, "kind", up.kind.String(), "codec", up.codec.MimeType, "rid", remote.RID())
	var levelExt uint8
	if !up.isVideo() {
		for _, e := range rec.GetParameters().HeaderExtensions {
			if e.URI == audioLevelURI {
				levelExt = uint8(e.ID)
			}
		}
	}
	if up.addLayer(remote.RID(), uint32(remote.SSRC()), levelExt, remote) == nil {
		return
	}
	if !exists && p.room.addTrack(up) && p.onPublished != nil {
		p.onPublished(up.info())
	}
}

// canAddTracks reports whether a new subscription can still reach the
// client: always for renegotiating sessions, only before the answer for
// one-shot ones.
func (p *Participant) canAddTracks() bool {
	if !p.oneShot {
		return true
	}
	return p.pc.CurrentLocalDescription() == nil && p.pc.PendingLocalDescription() == nil
}

// Subscribe subscribes the participant to a track of the room by its
// TrackInfo.ID.
func (p *Participant) Subscribe(trackID string) error {
	u, err := p.room.track(trackID)
	if err != nil {
		return err
	}
	return p.subscribe(u)
}

// Unsubscribe ends the subscription to a track.
func (p *Participant) Unsubscribe(trackID string) error {
	p.mu.Lock()
	var d *downTrack
	for u, x := range p.downs {
		if u.id == trackID {
			d = x
			delete(p.downs, u)
			break
		}
	}
	p.mu.Unlock()
	if d == nil {
		return fmt.Errorf("%w: %s", ErrNoSuchTrack, trackID)
	}
	p.dropDownTrack(d)
	return nil
}

func (p *Participant) subscribe(u *upTrack) error {
	if p.noSubscribe {
		return fmt.Errorf("%w: subscribe", ErrNotAllowed)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if _, ok := p.downs[u]; ok {
		p.mu.Unlock()
		return nil
	}
	d := newDownTrack(p.room, u, &p.prefs, p.log, p.writer)
	d.p = p
	d.onEnded = p.sourceEnded
	p.downs[u] = d
	p.mu.Unlock()

	sender, err := p.addSender(d)
	if err != nil {
		p.mu.Lock()
		delete(p.downs, u)
		p.mu.Unlock()
		d.close()
		return fmt.Errorf("sfu: add track: %w", err)
	}
	d.sender = sender
	u.subs.add(d)
	d.retarget()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		d.readRTCP()
	}()
	p.dirty.Store(true)
	p.requestNegotiation()
	return nil
}

// addSender gives d a send section towards the subscriber. One-shot
// sessions (WHEP) take the client's receive sections, as pion's AddTrack
// does. Renegotiating sessions reuse a section whose track ended (once its
// end is negotiated), so the SDP grows with the tracks being sent, not
// with the history of the room; a new section offers only the forwarded
// codec and its RTX. (Sendonly sections of their own, tried first, left
// pion members that publish while being offered tracks without some of
// them: parley bench meeting showed 63-90 of 180 subscriptions flowing.)
func (p *Participant) addSender(d *downTrack) (*webrtc.RTPSender, error) {
	if p.oneShot {
		return p.pc.AddTrack(d)
	}
	p.negMu.Lock()
	defer p.negMu.Unlock()
	// pion's AddTrack reuses a section of this kind that sends nothing:
	// a section of an ended subscription once its end is negotiated, or
	// the section the member publishes on (which then goes both ways);
	// otherwise it adds one.
	reusing := p.freeSections[d.kind] > 0
	sender, err := p.pc.AddTrack(d)
	if err != nil {
		return nil, err
	}
	if reusing {
		p.freeSections[d.kind]--
	}
	for _, t := range p.pc.GetTransceivers() {
		if t.Sender() != sender {
			continue
		}
		// Only a section that carries nothing else may be narrowed to the
		// forwarded codec: one the member publishes on keeps its codecs.
		if rcv := t.Receiver(); rcv == nil || len(rcv.Tracks()) == 0 || rcv.Track() == nil {
			p.preferCodec(t, d.codec)
		}
		break
	}
	return sender, nil
}

// preferCodec limits a send section's codecs to the one carrying c (and its
// RTX): the subscriber then answers with that codec alone too.
func (p *Participant) preferCodec(t *webrtc.RTPTransceiver, c webrtc.RTPCodecCapability) {
	if err := t.SetCodecPreferences(nil); err != nil { // back to all codecs (a reused section)
		p.log.Debug("codec preferences", "err", err)
		return
	}
	all := t.Sender().GetParameters().Codecs // this connection's, with its negotiated payload types
	match := bestCodec(c, all)
	if match == nil {
		return // keep them all; Bind reports the mismatch
	}
	prefs := []webrtc.RTPCodecParameters{*match}
	apt := fmt.Sprintf("apt=%d", match.PayloadType)
	for _, x := range all {
		if strings.EqualFold(x.MimeType, webrtc.MimeTypeRTX) && x.SDPFmtpLine == apt {
			prefs = append(prefs, x)
			break
		}
	}
	if isRED(match.MimeType) { // and the Opus inside, for a subscriber without RED (red.go)
		for _, x := range all {
			if strings.EqualFold(x.MimeType, webrtc.MimeTypeOpus) {
				prefs = append(prefs, x)
				break
			}
		}
	}
	if err := t.SetCodecPreferences(prefs); err != nil {
		p.log.Debug("codec preferences", "err", err)
	}
}

// Reattach gives an idle subscription (see OnSourceEnded) the track with
// ID trackID, of the same kind and codec: the subscriber's stream goes on
// (same SSRC, continuous numbering) from that track's next keyframe.
func (p *Participant) Reattach(endedID, trackID string) error {
	u, err := p.room.track(trackID)
	if err != nil {
		return err
	}
	p.mu.Lock()
	d := p.idle[endedID]
	switch {
	case p.closed:
		p.mu.Unlock()
		return ErrClosed
	case d == nil:
		p.mu.Unlock()
		return fmt.Errorf("%w: no idle subscription of %s", ErrNoSuchTrack, endedID)
	case d.kind != u.kind || !sameCodec(mediaCodec(u.codec.RTPCodecCapability), mediaCodec(d.codec)):
		p.mu.Unlock()
		return &CodecError{Kind: u.kind.String(), Offered: []string{d.codec.MimeType}, Supported: []string{u.codec.MimeType}, Stream: true}
	}
	delete(p.idle, endedID)
	p.downs[u] = d
	p.mu.Unlock()
	d.up.Store(u)
	u.subs.add(d)
	d.retarget()
	p.log.Info("subscription re-attached", "ended", endedID, "track", u.id)
	return nil
}

// sourceEnded is called when the track behind d was unpublished.
func (p *Participant) sourceEnded(d *downTrack, u *upTrack) {
	p.mu.Lock()
	if p.downs[u] == d {
		delete(p.downs, u)
	}
	keep := p.oneShot && p.onSourceEnded != nil && !p.closed
	if keep {
		p.idle[u.id] = d
	}
	p.mu.Unlock()
	switch {
	case keep:
		p.onSourceEnded(u.info())
	case p.oneShot:
		go p.Close() // cannot renegotiate the track away
	default:
		p.dropDownTrack(d)
	}
}

func (p *Participant) dropDownTrack(d *downTrack) {
	d.close()
	if d.sender != nil && !p.isClosed() {
		p.negMu.Lock()
		err := p.pc.RemoveTrack(d.sender)
		if err == nil && !p.oneShot {
			p.ended[d.kind]++ // reusable once the next exchange has made it inactive
		}
		p.negMu.Unlock()
		if err != nil {
			p.log.Debug("remove track", "err", err)
		}
	}
	p.dirty.Store(true)
	p.requestNegotiation()
}

// downTracks snapshots the participant's subscriptions, so callers can
// work on them without holding p.mu.
func (p *Participant) downTracks() []*downTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	ds := make([]*downTrack, 0, len(p.downs))
	for _, d := range p.downs {
		ds = append(ds, d)
	}
	return ds
}

// Tracks describes the tracks this participant publishes.
func (p *Participant) Tracks() []TrackInfo {
	p.mu.Lock()
	ups := make([]*upTrack, 0, len(p.ups))
	for _, u := range p.ups {
		ups = append(ups, u)
	}
	p.mu.Unlock()
	out := make([]TrackInfo, 0, len(ups))
	for _, u := range ups {
		out = append(out, u.info())
	}
	return out
}

// ParticipantStats are one participant's forwarding counters.
type ParticipantStats struct {
	Published  int    `json:"published"`
	Subscribed int    `json:"subscribed"`
	Packets    uint64 `json:"packets"` // sent to this participant
	Bytes      uint64 `json:"bytes"`
	Dropped    uint64 `json:"dropped"` // failed writes
	// SinkDrops counts packets dropped because this participant's
	// connection could not keep up (per subscription in Sinks).
	SinkDrops uint64      `json:"sink_drops"`
	Sinks     []SinkStats `json:"sinks,omitempty"`
	// Estimate is the bandwidth budget of each video track it receives
	// (bit/s, 0 = none: estimate.go); REMB the ceiling last sent to it as
	// a publisher (feedback.go).
	Estimate uint64 `json:"estimate,omitempty"`
	REMB     uint64 `json:"remb,omitempty"`
}

// Stats returns the participant's counters.
func (p *Participant) Stats() ParticipantStats {
	p.mu.Lock()
	st := ParticipantStats{Published: len(p.ups), Estimate: p.prefs.estimate.Load(), REMB: p.remb.Load()}
	p.mu.Unlock()
	for _, d := range p.downTracks() {
		ds, ok := d.liveStats()
		if !ok {
			continue
		}
		st.Subscribed++
		st.Packets += ds.Packets
		st.Bytes += ds.Bytes
		st.Dropped += ds.Errors
		st.SinkDrops += ds.Drops
		st.Sinks = append(st.Sinks, ds)
	}
	return st
}
