import Support
import Wire
import Crypto
import Protocol

/// What `wsctl status --json` prints: a stable, documented object
/// (DESIGN §8; every field is described in docs/status-json.md).
///
/// Stability rules, which the JSON shape follows from:
/// - Key names are spelled out in `CodingKeys` (snake_case), not derived by an
///   encoder strategy, so renaming a Swift property cannot rename a key.
/// - Every documented key is always present. A value not known yet (no
///   handshake, no RTT sample) is `null`, never a missing key, so
///   `jq .peers[0].endpoint` means the same thing on every node.
/// - Keys are emitted sorted (`ControlCodec` uses `.sortedKeys`), so two
///   reports diff cleanly.
/// - `version` changes only on an incompatible change; adding a key or an
///   enum value is compatible, so readers must ignore what they do not know.
public struct StatusReport: Codable, Sendable, Equatable {
    public static let currentVersion = 1

    public var version: Int
    public var node: Node
    public var anchors: [Anchor]
    public var peers: [Peer]
    /// Sentences for the operator ("only one anchor is reachable").
    public var warnings: [String]
    /// Packets dropped, by reason (session reasons such as "authFailed", "replay"; connectivity ones such as "relay_source_not_member"; docs/status-json.md lists them); flat so
    /// a monitoring script can read any counter without knowing the others.
    public var counters: [String: UInt64]

    public init(
        version: Int = StatusReport.currentVersion, node: Node, anchors: [Anchor] = [], peers: [Peer] = [],
        warnings: [String] = [], counters: [String: UInt64] = [:]
    ) {
        self.version = version
        self.node = node
        self.anchors = anchors
        self.peers = peers
        self.warnings = warnings
        self.counters = counters
    }

    enum CodingKeys: String, CodingKey {
        case version, node, anchors, peers, warnings, counters
    }

    // MARK: node

    public struct Node: Codable, Sendable, Equatable {
        public var publicKey: String
        public var interface: String
        /// Overlay address with prefix, "10.77.0.1/24" (the first of `addresses`).
        public var address: String
        /// Every overlay address of the node (`node.address` may be a list).
        public var addresses: [String]
        public var listenPort: UInt16
        public var anchor: Bool
        /// Reactors (threads) the daemon runs, each owning a share of the sessions.
        public var reactors: Int
        public var endpoints: [AdvertisedEndpoint]
        public var nat: NAT
        /// The node's X25519 static key in base64: what a stock WireGuard peer
        /// configures as this node's public key ("" from daemons before WireGuard peers).
        public var wireGuardPublicKey: String
        /// The interfaces traffic may leave through (`node.uplinks`, or every one
        /// with a route to the outside); nil from daemons before uplinks.
        public var uplinks: [Uplink]?
        /// The tunnel interface's MTU now: the smallest over the active paths
        /// (1280 ... `[node] mtu`); nil from daemons before it followed the paths.
        public var mtu: Int?

        public init(
            publicKey: String, interface: String, address: String, addresses: [String]? = nil, listenPort: UInt16, anchor: Bool = false,
            reactors: Int = 1, endpoints: [AdvertisedEndpoint] = [], nat: NAT = NAT(mapping: .unknown),
            wireGuardPublicKey: String = "", uplinks: [Uplink]? = nil, mtu: Int? = nil
        ) {
            self.mtu = mtu
            self.uplinks = uplinks
            self.wireGuardPublicKey = wireGuardPublicKey
            self.publicKey = publicKey
            self.interface = interface
            self.address = address
            self.addresses = addresses ?? [address]
            self.listenPort = listenPort
            self.anchor = anchor
            self.reactors = reactors
            self.endpoints = endpoints
            self.nat = nat
        }

        enum CodingKeys: String, CodingKey {
            case publicKey = "public_key"
            case interface, address, addresses
            case listenPort = "listen_port"
            case anchor, reactors, endpoints, nat
            case wireGuardPublicKey = "wireguard_public_key"
            case uplinks, mtu
        }

        /// `addresses` and `reactors` came with version 1's later daemons: from an
        /// earlier one they are `[address]` and 1.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            publicKey = try c.decode(String.self, forKey: .publicKey)
            interface = try c.decode(String.self, forKey: .interface)
            address = try c.decode(String.self, forKey: .address)
            addresses = try c.decodeIfPresent([String].self, forKey: .addresses) ?? [address]
            listenPort = try c.decode(UInt16.self, forKey: .listenPort)
            anchor = try c.decode(Bool.self, forKey: .anchor)
            reactors = try c.decodeIfPresent(Int.self, forKey: .reactors) ?? 1
            endpoints = try c.decode([AdvertisedEndpoint].self, forKey: .endpoints)
            nat = try c.decode(NAT.self, forKey: .nat)
            wireGuardPublicKey = try c.decodeIfPresent(String.self, forKey: .wireGuardPublicKey) ?? ""
            uplinks = try c.decodeIfPresent([Uplink].self, forKey: .uplinks)
            mtu = try c.decodeIfPresent(Int.self, forKey: .mtu)
        }
    }

    /// One of the node's uplinks: an interface its traffic may leave through.
    public struct Uplink: Codable, Sendable, Equatable {
        /// Its place in the list (a path's uplink, once paths are per uplink).
        public var index: Int
        public var name: String
        /// "config" (`node.uplinks`) or "routes" (it had a route to the outside when the daemon started).
        public var source: String
        /// Whether the interface exists now.
        public var present: Bool
        public init(index: Int, name: String, source: String, present: Bool) {
            self.index = index
            self.name = name
            self.source = source
            self.present = present
        }
    }

    /// An address this node believes it can be reached at, and how it knows.
    public struct AdvertisedEndpoint: Codable, Sendable, Equatable {
        /// "198.51.100.7:51820" or "[2001:db8::7]:51820".
        public var addr: String
        public var source: EndpointSource

        public init(addr: String, source: EndpointSource) {
            self.addr = addr
            self.source = source
        }
    }

    public enum EndpointSource: String, Codable, Sendable, CaseIterable {
        /// A local interface address.
        case local
        /// Reported by a peer that saw our packets come from it (PATH_PROBE_REPLY).
        case observed
        case upnp
        case natpmp
        case pcp
        /// Our address as announced on the LAN.
        case lan
    }

    public struct NAT: Codable, Sendable, Equatable {
        public var mapping: NATMapping
        /// What each anchor saw our packets come from: the classification's input.
        public var evidence: [Observation]
        public init(mapping: NATMapping, evidence: [Observation] = []) {
            self.mapping = mapping
            self.evidence = evidence
        }

        enum CodingKeys: String, CodingKey { case mapping, evidence }

        /// `evidence` came with later daemons of version 1: from an earlier one it is empty.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            mapping = try c.decode(NATMapping.self, forKey: .mapping)
            evidence = try c.decodeIfPresent([Observation].self, forKey: .evidence) ?? []
        }
    }

    /// One anchor's observation of our public address.
    public struct Observation: Codable, Sendable, Equatable {
        /// The anchor's name.
        public var anchor: String
        /// "198.51.100.7:40001": where our packets came from, as it saw them.
        public var observed: String
        /// Seconds since that observation.
        public var ageSeconds: UInt64

        public init(anchor: String, observed: String, ageSeconds: UInt64) {
            self.anchor = anchor
            self.observed = observed
            self.ageSeconds = ageSeconds
        }

        enum CodingKeys: String, CodingKey {
            case anchor, observed
            case ageSeconds = "age_s"
        }
    }

    // `mapping` is the connectivity core's NATMapping (Protocol/Connectivity/Decisions.swift):
    // RFC 4787 mapping behaviour, from comparing what different anchors observe.

    // MARK: anchors

    public struct Anchor: Codable, Sendable, Equatable {
        public var publicKey: String
        public var name: String
        public var reachable: Bool

        public init(publicKey: String, name: String, reachable: Bool) {
            self.publicKey = publicKey
            self.name = name
            self.reachable = reachable
        }

        enum CodingKeys: String, CodingKey {
            case publicKey = "public_key"
            case name, reachable
        }
    }

    // MARK: peers

    public struct Peer: Codable, Sendable, Equatable {
        public var name: String
        public var publicKey: String
        /// The overlay routes of this peer, as in the config.
        public var address: [String]
        public var state: PeerState
        /// Where data is sent now (the active path's remote); nil when idle.
        public var endpoint: String?
        /// Seconds since the last completed handshake; nil if none yet.
        public var lastHandshakeSecondsAgo: UInt64?
        public var rxBytes: UInt64
        public var txBytes: UInt64
        public var paths: [Path]
        /// The peer's own signed endpoint record, as gossip last brought it; nil if none yet.
        public var gossip: GossipRecord?
        /// Where the peer's signed LAN announcement (mDNS) came from, source `lan`; nil if none was taken.
        public var lan: AdvertisedEndpoint?
        /// Session messages that authenticated from / were sent to this peer (as `rx_bytes`/`tx_bytes`).
        public var rxPackets: UInt64
        public var txPackets: UInt64
        /// Handshakes with this peer that completed, and that gave up unanswered, since start.
        public var handshakesCompleted: UInt64
        public var handshakesFailed: UInt64
        /// A hole-punching round to this peer is running now.
        public var punching: Bool
        /// Seconds until a relayed peer's next try for a direct path; nil when none is scheduled.
        public var nextDirectRetrySeconds: Double?
        /// "whalescale" or "wireguard" (a stock WireGuard peer; absent from older daemons: whalescale).
        public var kind: String
        /// The configured persistent keepalive, seconds; nil: off.
        public var persistentKeepaliveS: UInt64?
        /// WireGuard peers: authenticated packets from a source other than the
        /// active path, and how many moved it (Whalescale's rules); nil for others.
        public var roam: Roam?
        /// The session's traffic by the kind of path it went over (every kind, in
        /// the order direct, lan, relay; empty from a daemon before this key).
        public var byPathKind: [PathTraffic]
        /// The current session's AEAD, "chacha20poly1305" or "aes256gcm"; nil without a session.
        public var cipher: String?
        /// The session negotiated DATA header flags: inner TCP/UDP checksums are left
        /// partial between the two ends (Wire/DataMessage.swift); nil without current keys.
        public var checksumOffload: Bool?
        /// The receiver's reorder buffer for this peer (multipath); nil when the peer never
        /// sent over two paths at once.
        public var reorder: Reorder?

        public init(
            name: String, publicKey: String, address: [String], state: PeerState, endpoint: String? = nil,
            lastHandshakeSecondsAgo: UInt64? = nil, rxBytes: UInt64 = 0, txBytes: UInt64 = 0, paths: [Path] = [],
            gossip: GossipRecord? = nil, punching: Bool = false, nextDirectRetrySeconds: Double? = nil,
            rxPackets: UInt64 = 0, txPackets: UInt64 = 0, handshakesCompleted: UInt64 = 0, handshakesFailed: UInt64 = 0,
            kind: String = "whalescale", persistentKeepaliveS: UInt64? = nil, roam: Roam? = nil,
            byPathKind: [PathTraffic] = [], lan: AdvertisedEndpoint? = nil, cipher: String? = nil, checksumOffload: Bool? = nil,
            reorder: Reorder? = nil
        ) {
            self.cipher = cipher
            self.checksumOffload = checksumOffload
            self.reorder = reorder
            self.byPathKind = byPathKind
            self.rxPackets = rxPackets
            self.txPackets = txPackets
            self.handshakesCompleted = handshakesCompleted
            self.handshakesFailed = handshakesFailed
            self.punching = punching
            self.nextDirectRetrySeconds = nextDirectRetrySeconds
            self.kind = kind
            self.persistentKeepaliveS = persistentKeepaliveS
            self.roam = roam
            self.name = name
            self.publicKey = publicKey
            self.address = address
            self.state = state
            self.endpoint = endpoint
            self.lastHandshakeSecondsAgo = lastHandshakeSecondsAgo
            self.rxBytes = rxBytes
            self.txBytes = txBytes
            self.paths = paths
            self.gossip = gossip
            self.lan = lan
        }

        enum CodingKeys: String, CodingKey {
            case name
            case publicKey = "public_key"
            case address, state, endpoint
            case lastHandshakeSecondsAgo = "last_handshake_s_ago"
            case rxBytes = "rx_bytes"
            case txBytes = "tx_bytes"
            case paths, gossip, punching, lan
            case nextDirectRetrySeconds = "next_direct_retry_s"
            case rxPackets = "rx_packets"
            case txPackets = "tx_packets"
            case handshakesCompleted = "handshakes_completed"
            case handshakesFailed = "handshakes_failed"
            case kind
            case persistentKeepaliveS = "persistent_keepalive_s"
            case roam
            case byPathKind = "by_path_kind"
            case cipher, reorder
            case checksumOffload = "checksum_offload"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            publicKey = try c.decode(String.self, forKey: .publicKey)
            address = try c.decode([String].self, forKey: .address)
            state = try c.decode(PeerState.self, forKey: .state)
            endpoint = try c.decodeIfPresent(String.self, forKey: .endpoint)
            lastHandshakeSecondsAgo = try c.decodeIfPresent(UInt64.self, forKey: .lastHandshakeSecondsAgo)
            rxBytes = try c.decode(UInt64.self, forKey: .rxBytes)
            txBytes = try c.decode(UInt64.self, forKey: .txBytes)
            paths = try c.decode([Path].self, forKey: .paths)
            // Absent from a daemon before gossip ran.
            gossip = try c.decodeIfPresent(GossipRecord.self, forKey: .gossip)
            punching = try c.decodeIfPresent(Bool.self, forKey: .punching) ?? false
            nextDirectRetrySeconds = try c.decodeIfPresent(Double.self, forKey: .nextDirectRetrySeconds)
            rxPackets = try c.decodeIfPresent(UInt64.self, forKey: .rxPackets) ?? 0
            txPackets = try c.decodeIfPresent(UInt64.self, forKey: .txPackets) ?? 0
            handshakesCompleted = try c.decodeIfPresent(UInt64.self, forKey: .handshakesCompleted) ?? 0
            handshakesFailed = try c.decodeIfPresent(UInt64.self, forKey: .handshakesFailed) ?? 0
            // Absent from a daemon before LAN discovery.
            lan = try c.decodeIfPresent(AdvertisedEndpoint.self, forKey: .lan)
            // Absent from a daemon before WireGuard peers.
            kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? "whalescale"
            persistentKeepaliveS = try c.decodeIfPresent(UInt64.self, forKey: .persistentKeepaliveS)
            roam = try c.decodeIfPresent(Roam.self, forKey: .roam)
            byPathKind = try c.decodeIfPresent([PathTraffic].self, forKey: .byPathKind) ?? []
            // Absent from a daemon before cipher negotiation.
            cipher = try c.decodeIfPresent(String.self, forKey: .cipher)
            // Absent from a daemon before header flags.
            checksumOffload = try c.decodeIfPresent(Bool.self, forKey: .checksumOffload)
            reorder = try c.decodeIfPresent(Reorder.self, forKey: .reorder)
        }

        // Written out so nil is `null`, not a missing key (see the type's rules).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(publicKey, forKey: .publicKey)
            try c.encode(address, forKey: .address)
            try c.encode(state, forKey: .state)
            try c.encode(endpoint, forKey: .endpoint)
            try c.encode(lastHandshakeSecondsAgo, forKey: .lastHandshakeSecondsAgo)
            try c.encode(rxBytes, forKey: .rxBytes)
            try c.encode(txBytes, forKey: .txBytes)
            try c.encode(paths, forKey: .paths)
            try c.encode(gossip, forKey: .gossip)
            try c.encode(punching, forKey: .punching)
            try c.encode(nextDirectRetrySeconds.flatMap { $0.isFinite ? $0 : nil }, forKey: .nextDirectRetrySeconds)
            try c.encode(rxPackets, forKey: .rxPackets)
            try c.encode(txPackets, forKey: .txPackets)
            try c.encode(handshakesCompleted, forKey: .handshakesCompleted)
            try c.encode(handshakesFailed, forKey: .handshakesFailed)
            try c.encode(lan, forKey: .lan)
            try c.encode(kind, forKey: .kind)
            try c.encode(persistentKeepaliveS, forKey: .persistentKeepaliveS)
            try c.encode(roam, forKey: .roam)
            try c.encode(byPathKind, forKey: .byPathKind)
            try c.encode(cipher, forKey: .cipher)
            try c.encode(checksumOffload, forKey: .checksumOffload)
            try c.encode(reorder, forKey: .reorder)
        }
    }

    /// A peer's reorder buffer counters (Protocol/Multipath/ReorderBuffer.swift, `ReorderCounters`).
    public struct Reorder: Codable, Sendable, Equatable {
        /// Buffering now: packets of the peer came over two paths within the last second.
        public var buffering: Bool
        public var held: UInt64
        public var releasedInOrder: UInt64
        public var releasedByTimeout: UInt64
        public var flushedByPathFailure: UInt64
        public var releasedByDepth: UInt64
        /// Packets released because every live path had delivered past the gap before them (a loss).
        public var releasedByLoss: UInt64
        public var droppedLateDuplicate: UInt64
        public var releasedLate: UInt64
        public var maxDepthReached: UInt64
        public var maxHeld: UInt64

        public init(buffering: Bool = false, held: UInt64 = 0, releasedInOrder: UInt64 = 0, releasedByTimeout: UInt64 = 0,
                    flushedByPathFailure: UInt64 = 0, releasedByDepth: UInt64 = 0, droppedLateDuplicate: UInt64 = 0,
                    releasedLate: UInt64 = 0, maxDepthReached: UInt64 = 0, maxHeld: UInt64 = 0,
                    releasedByLoss: UInt64 = 0) {
            self.releasedLate = releasedLate
            self.releasedByLoss = releasedByLoss
            self.buffering = buffering
            self.held = held
            self.releasedInOrder = releasedInOrder
            self.releasedByTimeout = releasedByTimeout
            self.flushedByPathFailure = flushedByPathFailure
            self.releasedByDepth = releasedByDepth
            self.droppedLateDuplicate = droppedLateDuplicate
            self.maxDepthReached = maxDepthReached
            self.maxHeld = maxHeld
        }

        enum CodingKeys: String, CodingKey {
            case buffering, held
            case releasedInOrder = "released_in_order"
            case releasedByTimeout = "released_by_timeout"
            case flushedByPathFailure = "flushed_by_path_failure"
            case releasedByDepth = "released_by_depth"
            case releasedByLoss = "released_by_loss"
            case droppedLateDuplicate = "dropped_late_duplicate"
            case releasedLate = "released_late"
            case maxDepthReached = "max_depth_reached"
            case maxHeld = "max_held"
        }
    }

    /// A peer's session traffic over paths of one kind.
    public struct PathTraffic: Codable, Sendable, Equatable {
        public var kind: PathKind
        public var rxBytes: UInt64
        public var rxPackets: UInt64
        public var txBytes: UInt64
        public var txPackets: UInt64

        public init(kind: PathKind, rxBytes: UInt64, rxPackets: UInt64, txBytes: UInt64, txPackets: UInt64) {
            self.kind = kind
            self.rxBytes = rxBytes
            self.rxPackets = rxPackets
            self.txBytes = txBytes
            self.txPackets = txPackets
        }

        enum CodingKeys: String, CodingKey {
            case kind
            case rxBytes = "rx_bytes"
            case rxPackets = "rx_packets"
            case txBytes = "tx_bytes"
            case txPackets = "tx_packets"
        }
    }

    /// A WireGuard peer's monitored roaming (seed 2.5): it is reported, not obeyed.
    public struct Roam: Codable, Sendable, Equatable {
        /// Authenticated packets from a source other than the active path.
        public var newSources: UInt64
        /// How many of them moved the path (under Whalescale's path rules).
        public var taken: UInt64
        /// The last such source, and the path it arrived beside.
        public var lastSource: String?
        public var roamedFrom: String?

        public init(newSources: UInt64, taken: UInt64, lastSource: String?, roamedFrom: String?) {
            self.newSources = newSources
            self.taken = taken
            self.lastSource = lastSource
            self.roamedFrom = roamedFrom
        }

        enum CodingKeys: String, CodingKey {
            case newSources = "new_sources"
            case taken
            case lastSource = "last_source"
            case roamedFrom = "roamed_from"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(newSources, forKey: .newSources)
            try c.encode(taken, forKey: .taken)
            try c.encode(lastSource, forKey: .lastSource)
            try c.encode(roamedFrom, forKey: .roamedFrom)
        }
    }

    /// A peer's gossip record: its sequence (higher wins) and the endpoints it signed.
    public struct GossipRecord: Codable, Sendable, Equatable {
        public var sequence: UInt64
        public var endpoints: [AdvertisedEndpoint]

        public init(sequence: UInt64, endpoints: [AdvertisedEndpoint]) {
            self.sequence = sequence
            self.endpoints = endpoints
        }
    }

    /// A peer's session state. An open set: the engine may add states (the
    /// JSON is a plain string), so this is a string wrapper, not an enum a
    /// reader would fail to decode on an unknown value.
    public struct PeerState: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// No session and no traffic waiting for one.
        public static let idle = PeerState(rawValue: "idle")
        /// A handshake is in flight.
        public static let handshaking = PeerState(rawValue: "handshaking")
        /// A session is established.
        public static let up = PeerState(rawValue: "up")

        public var description: String { rawValue }

        public init(from decoder: any Decoder) throws {
            rawValue = try decoder.singleValueContainer().decode(String.self)
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(rawValue)
        }
    }

    /// One way of reaching a peer (one entry of the peer's path set). Today
    /// at most one is active; several at once (multipath) is planned.
    public struct Path: Codable, Sendable, Equatable {
        public var kind: PathKind
        /// Our end: which local UDP socket the path leaves from ("udp0"; one
        /// per address family today). Nil from daemons before paths had one.
        public var local: String?
        /// The peer's address on this path; for a relay path, the anchor's.
        public var remote: String
        /// For a relay path, the anchor's name; nil otherwise.
        public var via: String?
        /// Smoothed round-trip time in milliseconds; nil before the first sample.
        public var rttMs: Double?
        /// Fraction of probes lost, 0...1; nil before the first probe.
        public var loss: Double?
        /// Whether data for the peer goes on it now.
        public var active: Bool
        /// A PATH_PONG came back over it within the validity window (nil: not reported).
        public var validated: Bool?
        /// Answered a ping recently (a relay path: its anchor is reachable).
        public var usable: Bool
        /// Seconds since an authenticated packet last arrived over it; nil: never (or not reported).
        public var lastRxSecondsAgo: UInt64?
        /// Who said the peer may be at `remote`: "gossip", "candidates", "cache", "config", "lan".
        public var sources: [String]
        /// The interface the kernel's main routing table sends `remote` through
        /// (the daemon's socket is bound to no uplink yet); nil: no route, or not reported.
        public var uplink: String?
        /// The largest inner packet this path carries: its uplink's MTU minus the
        /// outer IP and UDP headers and our overhead (nil: not reported).
        public var mtu: Int?
        /// Multipath (docs/multipath.md): this path's share of the peer's packets as the
        /// scheduler weighs it now, 0...1; nil when the peer's data is not spread.
        public var weight: Double?
        /// The scheduler's bandwidth estimate for this path, bits/s; nil when not spread or none yet.
        public var bandwidthBps: UInt64?
        /// Multipath: a far path's cap (scheduler rule 4b), bits/s; nil when not spread or not far.
        public var capBps: UInt64?

        public init(kind: PathKind, local: String? = nil, remote: String, via: String? = nil, rttMs: Double? = nil,
                    loss: Double? = nil, active: Bool, validated: Bool? = nil, usable: Bool? = nil,
                    lastRxSecondsAgo: UInt64? = nil, sources: [String] = [], uplink: String? = nil, mtu: Int? = nil,
                    weight: Double? = nil, bandwidthBps: UInt64? = nil, capBps: UInt64? = nil) {
            self.mtu = mtu
            self.capBps = capBps
            self.uplink = uplink
            self.weight = weight
            self.bandwidthBps = bandwidthBps
            self.usable = usable ?? active
            self.sources = sources
            self.validated = validated
            self.lastRxSecondsAgo = lastRxSecondsAgo
            self.kind = kind
            self.local = local
            self.remote = remote
            self.via = via
            self.rttMs = rttMs
            self.loss = loss
            self.active = active
        }

        enum CodingKeys: String, CodingKey {
            case kind, local, remote, via
            case rttMs = "rtt_ms"
            case loss, active, validated, usable, sources
            case lastRxSecondsAgo = "last_rx_s_ago"
            case uplink, mtu, weight
            case bandwidthBps = "bandwidth_bps"
            case capBps = "cap_bps"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decode(PathKind.self, forKey: .kind)
            remote = try c.decode(String.self, forKey: .remote)
            via = try c.decodeIfPresent(String.self, forKey: .via)
            rttMs = try c.decodeIfPresent(Double.self, forKey: .rttMs)
            loss = try c.decodeIfPresent(Double.self, forKey: .loss)
            active = try c.decode(Bool.self, forKey: .active)
            local = try c.decodeIfPresent(String.self, forKey: .local)
            validated = try c.decodeIfPresent(Bool.self, forKey: .validated)
            usable = try c.decodeIfPresent(Bool.self, forKey: .usable) ?? active
            lastRxSecondsAgo = try c.decodeIfPresent(UInt64.self, forKey: .lastRxSecondsAgo)
            sources = try c.decodeIfPresent([String].self, forKey: .sources) ?? []
            uplink = try c.decodeIfPresent(String.self, forKey: .uplink)
            mtu = try c.decodeIfPresent(Int.self, forKey: .mtu)
            // Absent from a daemon before multipath was wired.
            weight = try c.decodeIfPresent(Double.self, forKey: .weight)
            bandwidthBps = try c.decodeIfPresent(UInt64.self, forKey: .bandwidthBps)
            capBps = try c.decodeIfPresent(UInt64.self, forKey: .capBps)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(kind, forKey: .kind)
            try c.encode(remote, forKey: .remote)
            try c.encode(via, forKey: .via)
            // JSON has no NaN or infinity: a broken estimate is "unknown", not an encoding failure.
            try c.encode(rttMs.flatMap { $0.isFinite ? $0 : nil }, forKey: .rttMs)
            try c.encode(loss.flatMap { $0.isFinite ? $0 : nil }, forKey: .loss)
            try c.encode(active, forKey: .active)
            try c.encodeIfPresent(local, forKey: .local)
            try c.encodeIfPresent(validated, forKey: .validated)
            try c.encode(usable, forKey: .usable)
            if local != nil {
                try c.encode(lastRxSecondsAgo, forKey: .lastRxSecondsAgo)
                try c.encode(uplink, forKey: .uplink)
                try c.encode(weight.flatMap { $0.isFinite ? $0 : nil }, forKey: .weight)
                try c.encode(bandwidthBps, forKey: .bandwidthBps)
                try c.encode(capBps, forKey: .capBps)
            }
            try c.encodeIfPresent(mtu, forKey: .mtu)
            try c.encode(sources, forKey: .sources)
        }
    }

    // A path's `kind` is the connectivity core's PathKind (Protocol/Connectivity/Decisions.swift).
}
