package sfu

// Driving a Participant from a signaling layer
//
// A WebSocket (or long-poll) session that routes media through the SFU does:
//
//	p, err := s.Join(room, sfu.ParticipantOptions{ID: memberID, AutoSubscribe: true})
//	p.OnLocalOffer(func(sdp string) { send(client, {"type":"offer","sdp":sdp}) })
//	p.OnICECandidate(func(c *webrtc.ICECandidateInit) { send(client, candidate or end-of-candidates) })
//	p.OnClose(func() { tell the room the member's media ended })
//
//	on client offer:      answer, err := p.HandleOffer(ctx, sdp)   // send answer back
//	                      errors.Is(err, sfu.ErrGlare): the server's own offer is in
//	                      flight; the client rolls back, answers it, offers again.
//	                      *sfu.CodecError / sfu.ErrBadOffer: tell the client why.
//	on client answer:     err := p.HandleAnswer(sdp)
//	on client candidate:  err := p.AddICECandidate(init)           // early ones are queued
//	on leave/disconnect:  p.Close()
//
// The server offers (OnLocalOffer) whenever tracks it sends to the client
// appear or disappear: another member publishes or leaves. Offers are
// debounced by 50 ms, never overlap (the next waits for HandleAnswer) and
// never follow a client offer by less than 50 ms. The client may start
// with an offer of its own (to publish) or wait for the server's first
// offer (to receive only). Answers and offers already contain the server's
// candidates (one UDP port, optionally ICE-TCP on the same port number), so
// trickling them is optional.
//
// WHIP and WHEP (internal/whip) use one-shot participants: OneShot (no
// server offers; everything is settled by the client's single offer) and,
// for viewers, AutoSubscribe + ReceiveOnly. A viewer joins after the
// publisher's tracks exist, so they are in the answer. When the publisher
// leaves, a viewer's subscriptions stay idle (OnSourceEnded) and
// Participant.Reattach continues them with a restarted publisher's tracks
// (same SSRC, continuous sequence numbers and timestamps, starting at a
// keyframe); how long to wait and which track to take is internal/whip's
// policy, not the core's.
//
// Sources and sinks other than pion peers plug in through SFU.Publish
// (a Source writing RTP into a Publication) and Room.Subscribe (a Sink
// fed by its own queue and writer goroutine).
//
// Callbacks run on SFU goroutines and must not block for long.
