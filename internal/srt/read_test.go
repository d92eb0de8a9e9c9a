package srt

import (
	"testing"

	"github.com/parley/parley/internal/tap"
)

// TestWithParams: a keyframe without parameter sets gets the track's;
// other frames and complete keyframes pass as they are.
func TestWithParams(t *testing.T) {
	sps, pps, idr, p := []byte{0x67, 1}, []byte{0x68, 2}, []byte{0x65, 3}, []byte{0x41, 4}
	params := [][]byte{sps, pps}
	if au := withParams(tap.Frame{Key: true, AU: [][]byte{idr}}, params, h264Params); len(au) != 3 || au[0][0] != 0x67 || au[1][0] != 0x68 {
		t.Fatalf("IDR not completed: %x", au)
	}
	if au := withParams(tap.Frame{Key: true, AU: [][]byte{sps, pps, idr}}, params, h264Params); len(au) != 3 {
		t.Fatalf("%d NAL units", len(au))
	}
	if au := withParams(tap.Frame{AU: [][]byte{p}}, params, h264Params); len(au) != 1 {
		t.Fatalf("%d NAL units", len(au))
	}
	vps, hsps, irap := []byte{32 << 1, 1}, []byte{33 << 1, 1}, []byte{19 << 1, 1}
	if au := withParams(tap.Frame{Key: true, AU: [][]byte{irap}}, [][]byte{vps, hsps}, h265Params); len(au) != 3 {
		t.Fatalf("H.265 IRAP not completed: %x", au)
	}
}
