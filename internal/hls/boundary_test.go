package hls

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/parley/parley/internal/hls/hlstest"
)

// lastFinished is the media sequence number of a media playlist's last
// finished segment.
func lastFinished(t *testing.T, pl string) int {
	t.Helper()
	m := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`).FindStringSubmatch(pl)
	if m == nil {
		t.Fatalf("no media sequence:\n%s", pl)
	}
	var seq int
	json.Unmarshal([]byte(m[1]), &seq)
	return seq + strings.Count(pl, "#EXTINF") - 1
}

// TestSegmentBoundary: a blocking request for the part after the last
// part a segment will have (what hls.js asks while the segment is being
// made) is answered with part 0 of the next segment, not one whole
// segment later.
func TestSegmentBoundary(t *testing.T) {
	e := h264Env(t, Config{})
	_, pl := hlstest.Get(t, e.srv.URL+"/hls/cam/video1_stream.m3u8")
	making := lastFinished(t, pl) + 1
	// Every segment of the test stream has as many parts as the last
	// finished one.
	fin := pl[:strings.LastIndex(pl, "#EXTINF")]
	parts := strings.Count(fin[strings.LastIndex(fin, "#EXTINF"):], "#EXT-X-PART:")
	if parts == 0 {
		t.Fatalf("no parts in the last finished segment:\n%s", pl)
	}
	_, pl = hlstest.Get(t, e.srv.URL+"/hls/cam/video1_stream.m3u8?_HLS_msn="+itoa(making)+"&_HLS_part="+itoa(parts))
	if got := lastFinished(t, pl); got != making {
		t.Fatalf("asked for part 5 of segment %d: the answer came when segment %d was finished, want %d\n%s", making, got, making, pl)
	}
	if !strings.Contains(pl[strings.LastIndex(pl, "#EXTINF"):], "#EXT-X-PART:") {
		t.Fatalf("no part of segment %d in the answer:\n%s", making+1, pl)
	}
}

// TestEdge: which parts a playlist has, the next segment's first part
// for the one after a finished segment's last, whole segments for
// requests without _HLS_part, and too far ahead.
func TestEdge(t *testing.T) {
	e := newEdge()
	if ok, ch, err := e.has(1, 0); ok || ch == nil || err != nil {
		t.Fatal("an edge not read yet has a part")
	}
	hint := e.update("#EXT-X-MEDIA-SEQUENCE:5\n#EXTINF:1\ngap.mp4\n#EXT-X-PART:a\n#EXT-X-PART:b\n#EXTINF:1\nseg6.mp4\n#EXT-X-PART:c\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p_part3.mp4?token=x\"\n")
	if hint != "p_part3.mp4?token=x" {
		t.Errorf("hint %q", hint)
	}
	for _, c := range []struct {
		msn, part uint64
		has, err  bool
	}{
		{6, 1, true, false}, {6, 2, true, false} /* = (7, 0) */, {6, 3, true, false}, {7, 0, true, false}, {7, 1, false, false},
		{6, wholeSegment, true, false}, {7, wholeSegment, false, false}, {8, 0, false, false}, {9, 0, false, true}, {2, 0, true, false},
	} {
		ok, _, err := e.has(c.msn, c.part)
		if ok != c.has || (err != nil) != c.err {
			t.Errorf("has(%d, %d) = %v, %v", c.msn, c.part, ok, err)
		}
	}
}

// FuzzDirectives: no query makes reading the delivery directives, or
// looking them up on a live edge, panic.
func FuzzDirectives(f *testing.F) {
	for _, s := range []string{"_HLS_msn=7&_HLS_part=2", "_HLS_msn=7", "_HLS_part=1", "_HLS_msn=-1", "_HLS_msn=18446744073709551615&_HLS_part=18446744073709551615", "token=x&_HLS_msn=8&_HLS_skip=YES"} {
		f.Add(s)
	}
	e := newEdge()
	e.update("#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-PART:a\n#EXTINF:1\nseg5.mp4\n#EXT-X-PART:b\n")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		msn, part, rest, err := directives(q)
		if err != nil {
			return
		}
		if left, _ := url.ParseQuery(rest); left.Has("_HLS_msn") || left.Has("_HLS_part") {
			t.Fatalf("directives left in %q", rest)
		}
		_, _, _ = e.has(msn, part)
	})
}
