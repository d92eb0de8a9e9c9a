// Moderation: a track muted by a moderator is held by the server.
package sfu

// HoldTrack mutes (held true) or unmutes a published track by its
// TrackInfo.ID: while held, its packets are still read and cached but not
// forwarded, and its audio does not count for the active speaker. On
// release every subscriber resumes from a keyframe. The room's track list
// changes (TrackInfo.Muted), so Changed fires. It returns the track's
// description.
func (r *Room) HoldTrack(trackID string, held bool) (TrackInfo, error) {
	u, err := r.track(trackID)
	if err != nil {
		return TrackInfo{}, err
	}
	if u.held.Swap(held) != held {
		if !held {
			for _, d := range u.subs.load() {
				d.q.requestResync() // the stream starts again from a keyframe
				d.retarget()
			}
		}
		r.mu.Lock()
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}
	return u.info(), nil
}
