package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// channelNumber is the one channel each allocation binds (channels are
// per allocation, so every client can use the first number).
const channelNumber = 0x4000

// allocation is one TURN client: a connected UDP socket to the server, the
// relayed address, and the long-term auth state needed to deallocate.
type allocation struct {
	conn      *net.UDPConn
	relay     netip.AddrPort
	username  string
	realm     stun.Realm
	nonce     stun.Nonce
	integrity stun.MessageIntegrity
}

var requestedUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

// allocate performs Allocate (with the 401 nonce dance) and binds
// channelNumber to peer. It drives the TURN control plane by hand instead
// of through pion's client so that afterwards the data path can be plain
// batched ChannelData writes whose cost is the load generator's own, not
// a client library's per-packet locking and buffering.
func allocate(server *net.UDPAddr, username, password string, peer netip.AddrPort) (*allocation, error) {
	conn, err := net.DialUDP(server.Network(), nil, server)
	if err != nil {
		return nil, fmt.Errorf("turnload: dial %s: %w", server, err)
	}
	setBuffers(conn)
	a := &allocation{conn: conn, username: username}
	if err := a.authenticate(password); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := a.bind(peer); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return a, nil
}

func (a *allocation) authenticate(password string) error {
	res, err := transact(a.conn, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP)
	if err != nil {
		return err
	}
	if err := a.nonce.GetFrom(res); err != nil {
		return fmt.Errorf("turnload: allocate challenge without nonce: %w", err)
	}
	if err := a.realm.GetFrom(res); err != nil {
		return fmt.Errorf("turnload: allocate challenge without realm: %w", err)
	}
	a.integrity = stun.NewLongTermIntegrity(a.username, a.realm.String(), password)
	res, err = transact(a.conn, stun.NewType(stun.MethodAllocate, stun.ClassRequest), a.authed(requestedUDP)...)
	if err != nil {
		return err
	}
	if err := ensureSuccess(res); err != nil {
		return fmt.Errorf("turnload: allocate as %s: %w", a.username, err)
	}
	var relay stun.XORMappedAddress
	if err := relay.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return fmt.Errorf("turnload: allocate response without relay address: %w", err)
	}
	ip, _ := netip.AddrFromSlice(relay.IP)
	a.relay = netip.AddrPortFrom(ip.Unmap(), uint16(relay.Port))
	return nil
}

func (a *allocation) bind(peer netip.AddrPort) error {
	channel := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{channelNumber >> 8, channelNumber & 0xff, 0, 0}}
	pa := stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}
	peerAttr := setterFunc(func(m *stun.Message) error { return pa.AddToAs(m, stun.AttrXORPeerAddress) })
	res, err := transact(a.conn, stun.NewType(stun.MethodChannelBind, stun.ClassRequest), a.authed(channel, peerAttr)...)
	if err != nil {
		return err
	}
	if err := ensureSuccess(res); err != nil {
		return fmt.Errorf("turnload: channel bind to %s: %w", peer, err)
	}
	return nil
}

// release asks the server to drop the allocation (Refresh, lifetime 0)
// without waiting for the answer, then closes the socket.
func (a *allocation) release() {
	lifetime := stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest)},
		a.authed(lifetime)...)
	if m, err := stun.Build(setters...); err == nil {
		_, _ = a.conn.Write(m.Raw)
	}
	_ = a.conn.Close()
}

// authed appends the long-term credential attributes; MESSAGE-INTEGRITY
// must come last.
func (a *allocation) authed(attrs ...stun.Setter) []stun.Setter {
	return append(attrs, stun.NewUsername(a.username), a.realm, a.nonce, a.integrity)
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func ensureSuccess(res *stun.Message) error {
	if res.Type.Class == stun.ClassSuccessResponse {
		return nil
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(res); err == nil {
		return fmt.Errorf("%w: %s", errRefused, code.String())
	}
	return errRefused
}

var errRefused = errors.New("request refused")

// transact sends a request and waits for the response with the same
// transaction ID, retransmitting a few times as RFC 5389 asks for UDP.
func transact(conn *net.UDPConn, typ stun.MessageType, attrs ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID, typ}, attrs...)...)
	if err != nil {
		return nil, fmt.Errorf("turnload: build %v: %w", typ, err)
	}
	buf := make([]byte, 1500)
	for try := range 5 {
		if _, err := conn.Write(req.Raw); err != nil {
			return nil, fmt.Errorf("turnload: send %v: %w", typ, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Duration(200<<try) * time.Millisecond))
		if res, ok := awaitResponse(conn, buf, req.TransactionID); ok {
			_ = conn.SetReadDeadline(time.Time{})
			return res, nil
		}
	}
	return nil, fmt.Errorf("turnload: %v to %s: no response", typ, conn.RemoteAddr())
}

func awaitResponse(conn *net.UDPConn, buf []byte, id [stun.TransactionIDSize]byte) (*stun.Message, bool) {
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, false
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() == nil && res.TransactionID == id {
			return res, true
		}
	}
}
