package limit

import (
	"net/netip"
	"testing"
	"time"
)

func TestConns(t *testing.T) {
	c := NewConns(2)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	r1, ok1 := c.Acquire(a)
	r2, ok2 := c.Acquire(a)
	_, ok3 := c.Acquire(a)
	_, okb := c.Acquire(b)
	if !ok1 || !ok2 || ok3 || !okb {
		t.Fatalf("acquire: %v %v %v %v", ok1, ok2, ok3, okb)
	}
	r1()
	r1() // a second release is ignored
	if c.Count(a) != 1 {
		t.Fatalf("count after release = %d", c.Count(a))
	}
	if _, ok := c.Acquire(a); !ok {
		t.Fatal("slot not given back")
	}
	r2()
}

func TestRate(t *testing.T) {
	r := NewRate(3, time.Minute)
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if !r.Allow(a, now) {
			t.Fatalf("start %d refused", i)
		}
	}
	if r.Allow(a, now) {
		t.Fatal("fourth start in the same instant allowed")
	}
	if !r.Allow(netip.MustParseAddr("192.0.2.2"), now) {
		t.Fatal("another client limited")
	}
	if !r.Allow(a, now.Add(20*time.Second)) {
		t.Fatal("no token back after a third of the period")
	}
}

func TestRateForgetsIdleClients(t *testing.T) {
	r := NewRate(1, time.Second)
	r.sweepAt, r.minSweep = 4, 4
	now := time.Unix(1000, 0)
	for i := 0; i < 100; i++ {
		r.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now.Add(time.Duration(i)*time.Second))
	}
	if n := len(r.buckets); n > 8 {
		t.Fatalf("%d buckets kept for clients idle a whole period", n)
	}
}
