package signal

import (
	"github.com/parley/parley/internal/room"
	"github.com/parley/parley/pkg/protocol"
)

// The seam for members connected to other nodes of a cluster
// (internal/cluster): such a member is a room.Member like any other, with
// Remote set and the Info built here, so its room-mates are told its
// name, identity, verification and host flag exactly as for a local one.
// Nothing here runs on a single node.

// RemoteInfo is the Info of a member of another node described by p.
func RemoteInfo(p protocol.Peer) any { return newPeerInfo(p) }

// PeerOf is what a member's room-mates are told about it (for a cluster
// to tell other nodes about a local member).
func PeerOf(m *room.Member) protocol.Peer { return infoOf(m).peer }
