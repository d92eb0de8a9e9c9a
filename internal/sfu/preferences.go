package sfu

import "fmt"

// SetTrackPreference sets, for one received track (TrackInfo.ID), the
// highest simulcast layer wanted and whether it is paused. A big tile asks
// for high, a thumbnail for low, an off-screen tile pauses; the
// participant-wide cap and bandwidth estimate still apply on top.
func (p *Participant) SetTrackPreference(trackID string, q Quality, paused bool) error {
	p.mu.Lock()
	var d *downTrack
	for up, dt := range p.downs {
		if up.id == trackID {
			d = dt
			break
		}
	}
	p.mu.Unlock()
	if d == nil {
		return fmt.Errorf("%w: %s", ErrNoSuchTrack, trackID)
	}
	d.prefRank.Store(q.rank() + 1)
	d.paused.Store(paused)
	d.retarget()
	return nil
}

// Changed returns a channel that is closed at the next change of the
// room's published tracks, for signaling layers that announce track lists.
func (r *Room) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}
