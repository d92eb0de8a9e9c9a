// Bandwidth: what each subscriber may receive (simulcast layer cap,
// explicit bitrate cap, TWCC-based estimate (bwe.go), REMB while loss is
// reported), the least of them.
package sfu

import (
	"time"
)

// Quality is a subscriber's preferred maximum simulcast layer.
type Quality int

// Simulcast quality preferences. The zero value means "highest available".
const (
	QualityHigh   Quality = iota // highest layer (default)
	QualityLow                   // lowest layer ("q", "l" or "0")
	QualityMedium                // middle layer ("h", "m" or "1")
)

func (q Quality) rank() int32 {
	switch q {
	case QualityLow:
		return 0
	case QualityMedium:
		return 1
	}
	return 2
}

// SetMaxQuality caps the simulcast layer this participant receives.
func (p *Participant) SetMaxQuality(q Quality) {
	p.prefs.maxLayer.Store(q.rank())
	p.retargetAll()
}

// SetMaxBitrate sets an explicit bandwidth budget (bits per second, 0 = no
// limit) for each simulcast video track the participant receives; layers
// switch down (and back up) on the target layer's next keyframe.
func (p *Participant) SetMaxBitrate(bps uint64) {
	p.prefs.explicitLimit.Store(bps)
	p.updateEstimate()
}

// lossWindow is how long a loss report keeps REMB in force.
const lossWindow = 5 * time.Second

// lossThreshold is the reported fraction lost (of 256) that counts as
// congestion: about 2 %.
const lossThreshold = 5

// setEstimateFromREMB applies a subscriber's REMB as a budget only while
// it also reports loss. A receiver sends REMB only when transport-cc is
// not negotiated (then the SFU's own TWCC-based estimate, bwe.go, cannot
// run and nothing probes), and its estimate cannot grow past what it
// already gets: trusted blindly, REMB pins every viewer to the lowest
// layer for good. With loss it is a real congestion signal; without loss
// for lossWindow the budget is lifted and the layer climbs again.
func (p *Participant) setEstimateFromREMB(bps uint64) {
	if time.Since(time.Unix(0, p.prefs.lastLoss.Load())) > lossWindow {
		bps = 0
	}
	if p.prefs.rembLimit.Swap(bps) != bps {
		p.updateEstimate()
	}
}

// noteLoss records a receiver report's fraction lost.
func noteLoss(pr *prefs, fractionLost uint8) {
	if fractionLost >= lossThreshold {
		pr.lastLoss.Store(time.Now().UnixNano())
	}
}

func (p *Participant) updateEstimate() {
	e := uint64(0)
	for _, b := range []uint64{p.prefs.explicitLimit.Load(), p.prefs.rembLimit.Load(), p.prefs.twccLimit.Load()} {
		if e == 0 || (b != 0 && b < e) {
			e = b
		}
	}
	if p.prefs.estimate.Swap(e) != e {
		p.retargetAll()
	}
}

func (p *Participant) retargetAll() {
	for _, d := range p.downTracks() {
		d.retarget()
	}
}
