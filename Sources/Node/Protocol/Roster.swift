// The roster: who is in the network, built once from the config's member list
// and never changed after (a config reload builds a new one). One value, shared
// by everything that maps a key or a relay label to a member:
//
//   config [[peer]] ──▶ Roster ──┬─▶ Tunnels       handshake: X25519 static -> member; peerID(for: key)
//                                ├─▶ NodeCore      RELAY label -> member, status names
//                                └─▶ SessionShard  RELAY label -> member (split data path)
//
// Ids: the roster assigns each member its `PeerID`, an index into its member
// list. Today it assigns them in config order, but nothing may read meaning
// into that: ask the roster (`peer(for:)`, `peer(relayLabel:)`, `[id]`).
//
// A key is a `PeerKey`: a Whalescale member's Ed25519 key, or a WireGuard
// peer's X25519 key (`wireguard = true` in the config). A WireGuard peer has
// no capabilities beyond its tunnel: no control messages, relay or punching
// (NodeCore checks them before sending any of those), and its handshake is
// WireGuard's suite (Crypto/WireGuardHandshake.swift).

import Support
import Wire
import Crypto

/// A member's public key, by the kind of peer it belongs to.
public enum PeerKey: Hashable, Sendable {
    /// A Whalescale node: Ed25519, its Noise static is the derived X25519 key (DESIGN §3).
    case whalescale(PublicKey)
    /// A stock WireGuard peer: its X25519 public key, as `wg pubkey` prints it.
    case wireGuard(PublicKey)

    /// The X25519 static the handshake names this member by (nil: not a valid point).
    public var x25519Static: [UInt8]? {
        switch self {
        case .whalescale(let k): k.x25519
        case .wireGuard(let k): k.bytes
        }
    }

    /// The Ed25519 key of a Whalescale member.
    public var whalescaleKey: PublicKey? {
        switch self {
        case .whalescale(let k): k
        case .wireGuard: nil
        }
    }

    /// The handshake suite this member speaks.
    public var suite: HandshakeSuiteID {
        switch self {
        case .whalescale: .whalescaleIK
        case .wireGuard: .wireGuard
        }
    }
}

/// What kind of peer a configured member is.
public enum MemberKind: Sendable {
    case whalescale
    /// A stock WireGuard peer (single path, WireGuard's wire format), with its
    /// optional preshared key.
    case wireGuard(psk: PresharedKey?)

    public var isWireGuard: Bool { if case .wireGuard = self { true } else { false } }
}

/// What a member can take part in beyond its tunnel.
public struct Capabilities: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Encrypted control messages (PATH_PING/PONG, rendezvous, candidates).
    public static let controlMessages = Capabilities(rawValue: 1 << 0)
    /// RELAY through anchors, in either role.
    public static let relay = Capabilities(rawValue: 1 << 1)
    /// Hole punching (rendezvous through an anchor, candidates).
    public static let punch = Capabilities(rawValue: 1 << 2)
    /// A Whalescale member: everything.
    public static let whalescale: Capabilities = [.controlMessages, .relay, .punch]
}

/// One member of the network.
public struct Member: Sendable, Equatable {
    public let key: PeerKey
    public let name: String
    /// Its relay label (Wire/Relay.swift).
    public let memberID: MemberID
    public let isAnchor: Bool
    public let capabilities: Capabilities
    /// This node's own entry (members share one config, so each finds itself in it).
    public let isLocal: Bool
}

/// Every member, by id, key and relay label. Immutable once built.
public struct Roster: Sendable {
    /// Indexed by `PeerID.rawValue`.
    public let members: [Member]
    private let byKey: [PeerKey: PeerID]
    private let byLabel: [MemberID: PeerID]
    /// X25519 statics, converted once: an initiation names its static after the
    /// first DH, and a stranger's is refused there.
    private let byStatic: [[UInt8]: PeerID]

    /// An empty roster (a lane that holds no sessions).
    public init() {
        members = []
        byKey = [:]
        byLabel = [:]
        byStatic = [:]
    }

    /// - Parameters:
    ///   - local: this node's key: its own entry is kept (so ids cover the
    ///     whole list) but is never found by a lookup: we are no one's peer.
    ///   - members: the config's members. A duplicate key is listed but not
    ///     found (config validation reports it; the first entry wins).
    public init(local: PublicKey, members specs: [MemberSpec]) {
        var members: [Member] = []
        var byKey: [PeerKey: PeerID] = [:]
        var byLabel: [MemberID: PeerID] = [:]
        var byStatic: [[UInt8]: PeerID] = [:]
        members.reserveCapacity(specs.count)
        for (i, spec) in specs.enumerated() {
            let id = PeerID(rawValue: i)
            let key: PeerKey = spec.kind.isWireGuard ? .wireGuard(spec.publicKey) : .whalescale(spec.publicKey)
            let label = MemberID(publicKey: spec.publicKey)
            let isLocal = !spec.kind.isWireGuard && spec.publicKey == local
            members.append(Member(key: key, name: spec.name, memberID: label, isAnchor: spec.isAnchor && !spec.kind.isWireGuard,
                                  capabilities: spec.kind.isWireGuard ? [] : .whalescale, isLocal: isLocal))
            guard !isLocal, byKey[key] == nil else { continue }
            byKey[key] = id
            if byLabel[label] == nil { byLabel[label] = id }
            if let x = key.x25519Static, byStatic[x] == nil { byStatic[x] = id }
        }
        self.members = members
        self.byKey = byKey
        self.byLabel = byLabel
        self.byStatic = byStatic
    }

    public var count: Int { members.count }

    /// The member with id `id` (which the roster gave out: in range).
    public subscript(id: PeerID) -> Member { members[id.rawValue] }

    public func contains(_ id: PeerID) -> Bool { id.rawValue >= 0 && id.rawValue < members.count }

    /// The peer with this key (never ourselves).
    public func peer(for key: PeerKey) -> PeerID? { byKey[key] }

    public func peer(for key: PublicKey) -> PeerID? { byKey[.whalescale(key)] }

    /// The peer a RELAY names by its label (never ourselves).
    public func peer(relayLabel: MemberID) -> PeerID? { byLabel[relayLabel] }

    /// The peer whose X25519 static an initiation carries (never ourselves).
    public func peer(staticKey: [UInt8]) -> PeerID? { byStatic[staticKey] }
}
