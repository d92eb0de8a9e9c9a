package sfu

// Hooks for relaying a room's tracks to other nodes (internal/cluster's
// media relay): the relay on the origin node needs what a track was
// published with to publish the same on an edge node, and must tell its
// own relayed tracks from local ones.

// TrackSpecOf returns the spec a published track was published with (one
// layer: a relay carries what a subscription gets, one layer at a time)
// and its source.
func (r *Room) TrackSpecOf(id string) (TrackSpec, Source, error) {
	u, err := r.track(id)
	if err != nil {
		return TrackSpec{}, nil, err
	}
	return TrackSpec{TrackID: u.trackID, StreamID: u.streamID, Codec: u.codec, SharedClock: u.sharedClock}, u.src, nil
}
