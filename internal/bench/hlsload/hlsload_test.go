package hlsload

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley/parley/internal/bench/benchsrv"
	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// TestRun: a short run against an in-process server: every client
// follows the stream and gets the parts.
func TestRun(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := benchsrv.StartConfig(ctx, benchsrv.WithRTMP(benchsrv.Config()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res, err := Run(ctx, Options{URL: srv.URL(), RTMPURL: fmt.Sprintf("rtmp://%s", srv.RTMPAddr()), Clients: 20, PerAddress: 5,
		Warmup: time.Second, Duration: 3 * time.Second})
	t.Logf("\n%s", res.Table())
	if err != nil {
		t.Fatal(err)
	}
	if res.Following != 20 || res.Parts < 5 || res.Fetches < 20*res.Parts*9/10 {
		t.Errorf("following %d, parts %d, fetches %d", res.Following, res.Parts, res.Fetches)
	}
}

// TestNewestPart: where the last part of a playlist stands, inside a
// finished segment or in the one being made.
func TestNewestPart(t *testing.T) {
	pl := "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:1,\ngap.mp4\n#EXT-X-PART:DURATION=0.2,URI=\"a_part0.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"a_part1.mp4\"\n#EXTINF:0.4,\nseg5.mp4\n"
	if p, ok := newestPart(pl); !ok || p.msn != 5 || p.part != 1 || p.uri != "a_part1.mp4" || !p.final {
		t.Errorf("in a finished segment: %+v %v", p, ok)
	}
	pl += "#EXT-X-PART:DURATION=0.2,URI=\"a_part2.mp4?token=x\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a_part3.mp4\"\n"
	if p, ok := newestPart(pl); !ok || p.msn != 6 || p.part != 0 || p.uri != "a_part2.mp4?token=x" || p.final {
		t.Errorf("in the segment being made: %+v %v", p, ok)
	}
}
