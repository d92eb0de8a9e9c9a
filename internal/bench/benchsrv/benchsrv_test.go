package benchsrv

import "testing"

func TestLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1:8080":           true,
		"http://127.3.4.5:1":              true,
		"http://[::1]:8080":               true,
		"http://localhost:8080":           true,
		"http://127.0.0.1.example.com:80": false,
		"http://192.0.2.1:8080":           false,
		"http://[2001:db8::1]:8080":       false,
		"::nope":                          false,
	} {
		if got := LoopbackURL(u); got != want {
			t.Errorf("LoopbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}

func TestSetArg(t *testing.T) {
	a := SetArg(ArgsFor(true), "--rtmp", "127.0.0.1:1")
	var tcp, rtmp string
	for i := 0; i+1 < len(a); i++ {
		switch a[i] {
		case "--media-tcp":
			tcp = a[i+1]
		case "--rtmp":
			rtmp = a[i+1]
		}
	}
	if tcp != MediaTCP || rtmp != "127.0.0.1:1" || len(a) != len(Args) {
		t.Fatalf("args %q", a)
	}
	if Args[len(Args)-1] == "127.0.0.1:1" || len(SetArg([]string{"--x", "1"}, "--y", "2")) != 4 {
		t.Fatal("SetArg")
	}
}
