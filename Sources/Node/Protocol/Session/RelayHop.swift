// The relay-tag keys of one hop: our session with an anchor (a member's view)
// or with a member (an anchor's view). See Wire/Relay.swift and Crypto/RelayTag.swift.
//
// A RELAY is tagged under the sender's current keypair with the next hop. The
// receiver accepts a tag under any keypair it holds for that session: current,
// next (the sender initiated a rekey and already sends under the new keys,
// which we hold as `next` until the first DATA under them) and previous (we
// initiated it and the sender has not switched yet).
import Support
import Wire
import Crypto

/// One hop session's relay-tag keys, as values (pushed to the lanes with the anchor list).
public struct RelayHopKeys: Equatable, Sendable {
    /// What we tag a RELAY to that hop with: the current keypair's send key (next's before there is one).
    public var send: RelayTagKey?
    /// What a RELAY from that hop may be tagged with: current, next, previous receive keys.
    var receiveCurrent: RelayTagKey?
    var receiveNext: RelayTagKey?
    var receivePrevious: RelayTagKey?

    public init() {}

    /// Whether the RELAY of `length` bytes at `relay` (parsed already) is tagged by that hop.
    @inline(__always)
    public func check(_ relay: UnsafeRawPointer, length: Int) -> Bool {
        RelayTag.check(relay, length: length, key: receiveCurrent)
            || RelayTag.check(relay, length: length, key: receiveNext)
            || RelayTag.check(relay, length: length, key: receivePrevious)
    }
}

extension KeypairSlots {
    /// The relay-tag keys of these keypairs.
    /// Read through the optionals field by field: `current ?? next` would copy a
    /// whole keypair (its 1 KiB replay window) per call, and an anchor asks twice
    /// per forwarded packet.
    /// Inlined: called out of line, the caller copied the whole slots (three
    /// keypairs, 3.6 KiB) to pass them (seen in the release build's code).
    @inline(__always)
    var relayHop: RelayHopKeys {
        var h = RelayHopKeys()
        h.send = current?.keys.send.relayTagKey ?? next?.keys.send.relayTagKey
        h.receiveCurrent = current?.keys.receive.relayTagKey
        h.receiveNext = next?.keys.receive.relayTagKey
        h.receivePrevious = previous?.keys.receive.relayTagKey
        return h
    }
}

/// An anchor as the lanes see it: where RELAY from it comes from and goes to, and its hop keys.
public struct RelayAnchor: Equatable, Sendable {
    public var endpoint: Endpoint
    public var peer: PeerID
    public var keys: RelayHopKeys
    public init(endpoint: Endpoint, peer: PeerID, keys: RelayHopKeys) {
        self.endpoint = endpoint
        self.peer = peer
        self.keys = keys
    }
}
