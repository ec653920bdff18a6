// EndpointBook: the one store of "where might member X be", and of where we
// might be reached ourselves. Every address NodeCore punches, probes or
// announces comes from here, with its source and age:
//
//   member X:  config     the static endpoint from the config
//              cache      endpoints that authenticated before (EndpointCache, persisted by the engine)
//              announced  X's CANDIDATES, or an anchor's RENDEZVOUS on X's behalf (each with
//                         its EndpointSource: local, observed, upnp, ...), and when they came
//              gossip     X's own signed endpoint record, from gossip (its sequence, when it came):
//                         signed by X, so vouched for like the cache
//              lan        where X's signed mDNS announcement came from on our LAN (LAN
//                         discovery, `setLan`): X's LAN address and port, vouched for
//   us:        local      interface addresses (the engine: `setLocalEndpoints`)
//              mapped     port mappings (UPnP-IGD, NAT-PMP, PCP: `addMappedEndpoint`)
//              observed   where anchors see us (the AnchorTracker's observations, passed in)
//
// Nothing else keeps a list of addresses.
//
// Owns: the above, the per-member CANDIDATES budget (review M8: 1/s, burst 5)
// and the per-member budget of addresses only the member vouched for.
// Inputs:  setLocals / addMapped / removeMapped, `allowUpdate` + `setCandidates`
//          (a CANDIDATES or RENDEZVOUS, through `admit`), `recordWorking` (a direct
//          path authenticated), `loadCache`.
// Outputs: answers (`ownCandidates`, `punchable`, `recoveryEndpoints`, `entries`),
//          `announce` (whether our list changed), `recordWorking` (whether the cache changed:
//          NodeCore emits `endpointCacheChanged`). No timer, no transmit.

import Support
import Wire
import Crypto

struct EndpointBook: Sendable {
    /// Where an address of a member came from.
    enum Source: Equatable, Sendable {
        case config
        case cache
        /// The member announced it (or an anchor introduced it), as this kind of address.
        case announced(EndpointSource)
        /// The member's own signed record said so, as this kind of address (gossip).
        case gossip(EndpointSource)
        /// The member's signed LAN announcement came from there (LAN discovery).
        case lan
    }

    /// One address of a member: where it came from and since when (nil: not
    /// known, a configured or persisted one).
    struct Entry: Equatable, Sendable {
        var endpoint: Endpoint
        var source: Source
        var since: Instant?
    }

    private struct Member: Sendable {
        let key: PublicKey
        let staticEndpoint: Endpoint?
        var candidates: [Candidate] = []
        var candidatesAt: Instant?
        /// CANDIDATES messages from this member (every node: review M8).
        var updates: TokenBucket
        /// Addresses only the member itself vouched for that we took as punch
        /// targets in the window that began at `unattestedSince` (`admit`).
        var unattested: [Endpoint] = []
        var unattestedSince: Instant?
        /// The member's gossip record: its endpoints, sequence, and when we took it.
        var gossiped: [Candidate] = []
        var gossipSequence: UInt64 = 0
        var gossipedAt: Instant?
        /// Where the member's newest signed LAN announcement came from, and when.
        var lan: Endpoint?
        var lanAt: Instant?
    }

    let timings: ConnectivityTimings
    private var members: [Member]
    private(set) var cache = EndpointCache()
    private(set) var locals: [Endpoint] = []
    private(set) var mapped: [Candidate] = []
    /// What we last announced to the anchors.
    private(set) var announced: [Candidate] = []
    /// Prefixes this node routes into its own tunnel: its overlay prefixes and
    /// every member's `address` (e.g. the LAN behind a site's edge router).
    /// An address in them is never a member's endpoint: a packet sent there
    /// goes through the tunnel (a routing loop), and one heard from there came
    /// through it. A site's edge router announces its LAN address as a local
    /// candidate; the other site routes that LAN to the tunnel.
    var tunnelled: [CIDR] = []

    init(members: [MemberSpec], timings: ConnectivityTimings) {
        self.timings = timings
        self.members = members.map {
            Member(key: $0.publicKey, staticEndpoint: $0.endpoint,
                   updates: TokenBucket(rate: UInt64(max(0, timings.candidateUpdatesPerSecond)),
                                        burst: UInt64(max(0, timings.candidateUpdateBurst))))
        }
    }

    // MARK: Us

    mutating func setLocals(_ endpoints: [Endpoint]) { locals = endpoints }

    /// False if it was there already.
    mutating func addMapped(_ c: Candidate) -> Bool {
        guard !mapped.contains(c) else { return false }
        mapped.append(c)
        return true
    }

    mutating func removeMapped(_ endpoint: Endpoint) { mapped.removeAll { $0.endpoint == endpoint } }

    /// Our candidates, best first: local, port-mapped, observed by anchors
    /// (`observed`, in anchor order); never one nobody else could reach.
    func ownCandidates(observed: [Endpoint]) -> [Candidate] {
        var out: [Candidate] = []
        func add(_ c: Candidate) {
            if PathManager.isUsableRemote(c.endpoint), !out.contains(where: { $0.endpoint == c.endpoint }) { out.append(c) }
        }
        for l in locals { add(Candidate(l, .local)) }
        for m in mapped { add(m) }
        for o in observed { add(Candidate(o, .observed)) }
        return Array(out.prefix(ControlMessage.maxCandidates))
    }

    /// Records `list` as announced; true if it differs from the last one.
    mutating func announce(_ list: [Candidate]) -> Bool {
        guard list != announced else { return false }
        announced = list
        return true
    }

    /// Whether `ep` is ours (never a hole-punching target).
    func isOwn(_ ep: Endpoint, observed: [Endpoint]) -> Bool {
        locals.contains(ep) || mapped.contains { $0.endpoint == ep } || observed.contains(ep)
    }

    /// Whether this node routes `ep`'s address into its own tunnel (`tunnelled`).
    func isTunnelled(_ ep: Endpoint) -> Bool {
        tunnelled.contains { $0.contains(ep.address, family: ep.family) }
    }

    // MARK: Members

    func staticEndpoint(_ p: PeerID) -> Endpoint? { members[p.rawValue].staticEndpoint }

    func candidates(_ p: PeerID) -> [Candidate] { members[p.rawValue].candidates }

    func cached(_ p: PeerID) -> [Endpoint] { cache.endpoints(for: members[p.rawValue].key).filter { !isTunnelled($0) } }

    /// The endpoints of `p`'s newest gossip record (the member's own signed word).
    func gossiped(_ p: PeerID) -> [Candidate] { members[p.rawValue].gossiped }

    /// The sequence of the record `gossiped(p)` came from (0: none).
    func gossipSequence(_ p: PeerID) -> UInt64 { members[p.rawValue].gossipSequence }

    /// A newer gossip record of `p` (the machine checked its signature and sequence).
    mutating func setGossiped(_ p: PeerID, _ list: [Candidate], sequence: UInt64, now: Instant) {
        members[p.rawValue].gossiped = Array(list.prefix(EndpointRecord.maxEndpoints))
        members[p.rawValue].gossipSequence = sequence
        members[p.rawValue].gossipedAt = now
    }

    /// Where `p`'s LAN announcement came from (nil: none taken).
    func lan(_ p: PeerID) -> Endpoint? { members[p.rawValue].lan }

    /// A signed LAN announcement of `p` came from `ep`; false if that is what we had.
    mutating func setLan(_ p: PeerID, _ ep: Endpoint, now: Instant) -> Bool {
        members[p.rawValue].lanAt = now
        guard members[p.rawValue].lan != ep else { return false }
        members[p.rawValue].lan = ep
        return true
    }

    /// Every address of `p` with its source and age: LAN, announced, gossip, cached, configured.
    func entries(for p: PeerID) -> [Entry] {
        let m = members[p.rawValue]
        return [m.lan].compactMap { $0 }.map { Entry(endpoint: $0, source: .lan, since: m.lanAt) }
            + m.candidates.map { Entry(endpoint: $0.endpoint, source: .announced($0.source), since: m.candidatesAt) }
            + m.gossiped.map { Entry(endpoint: $0.endpoint, source: .gossip($0.source), since: m.gossipedAt) }
            + cached(p).map { Entry(endpoint: $0, source: .cache, since: nil) }
            + [m.staticEndpoint].compactMap { $0 }.map { Entry(endpoint: $0, source: .config, since: nil) }
    }

    /// The kind of a direct path to `remote`: lan when the member said it is
    /// a local/lan address of theirs, or the address is private (RFC 1918,
    /// link-local, ULA); direct otherwise.
    func directKind(_ p: PeerID, for remote: Endpoint) -> PathKind {
        if members[p.rawValue].lan == remote { return .lan }
        for c in members[p.rawValue].candidates + members[p.rawValue].gossiped where c.endpoint == remote {
            return c.source == .local || c.source == .lan ? .lan : .direct
        }
        return PathManager.isPrivate(remote) ? .lan : .direct
    }

    /// Addresses of `p` worth a punch ping, before NodeCore's own filters:
    /// its LAN announcement's source, its candidates, its gossip record's endpoints, then what the cache and config know;
    /// never one we route into the tunnel (`tunnelled`).
    func punchable(_ p: PeerID) -> [Endpoint] {
        var out = [members[p.rawValue].lan].compactMap { $0 }
        for c in members[p.rawValue].candidates where !out.contains(c.endpoint) { out.append(c.endpoint) }
        for c in members[p.rawValue].gossiped where !out.contains(c.endpoint) { out.append(c.endpoint) }
        return (out + cached(p) + [staticEndpoint(p)].compactMap { $0 }).filter { !isTunnelled($0) }
    }

    /// A CANDIDATES from `p`: within its budget?
    mutating func allowUpdate(from p: PeerID, now: Instant) -> Bool { members[p.rawValue].updates.take(1, now: now) }

    mutating func setCandidates(_ p: PeerID, _ list: [Candidate], now: Instant) {
        members[p.rawValue].candidates = list
        members[p.rawValue].candidatesAt = now
    }

    /// The part of `list` (a member's announced candidates, or an anchor's
    /// introduction, or the endpoints of its new gossip record) we will punch.
    /// Vouched-for addresses always: `attested` (the introducing anchor's own
    /// observation), `p`'s configured or cached endpoints, what its gossip
    /// record held already (admitted when it came) and its LAN announcement's
    /// source, and addresses we have heard `p` from (`heard`). Every other
    /// address is only `p`'s word, and a member could name any host on the
    /// Internet: at most `unattestedPunchTargets` distinct ones per
    /// `unattestedPunchWindow`, however many introductions arrive (review M8).
    /// Within the budget, observed addresses are taken first (they are
    /// public), then the rest in the member's order; the result keeps the list's order.
    mutating func admit(_ p: PeerID, _ list: [Candidate], attested: Endpoint?, heard: [Endpoint], now: Instant) -> [Candidate] {
        let i = p.rawValue
        if members[i].unattestedSince.map({ now - $0 >= timings.unattestedPunchWindow }) ?? true {
            members[i].unattested = []
            members[i].unattestedSince = now
        }
        let list = Array(list.prefix(ControlMessage.maxCandidates))
        let cached = cached(p)
        let configured = members[i].staticEndpoint
        let signed = members[i].gossiped.map(\.endpoint) + [members[i].lan].compactMap { $0 }
        func vouched(_ ep: Endpoint) -> Bool {
            ep == attested || ep == configured || cached.contains(ep) || heard.contains(ep) || signed.contains(ep)
        }
        var admitted: [Endpoint] = []
        for c in list.filter({ $0.source == .observed }) + list.filter({ $0.source != .observed }) {
            let ep = c.endpoint
            if admitted.contains(ep) { continue }
            if vouched(ep) || members[i].unattested.contains(ep) {
                admitted.append(ep)
            } else if members[i].unattested.count < timings.unattestedPunchTargets {
                members[i].unattested.append(ep)
                admitted.append(ep)
            }
        }
        return list.filter { admitted.contains($0.endpoint) }
    }

    /// A direct path to `p` authenticated at `ep`: cached (most recent
    /// first). True if the cache changed.
    mutating func recordWorking(_ p: PeerID, _ ep: Endpoint) -> Bool {
        guard !isTunnelled(ep) else { return false }
        return cache.record(ep, for: members[p.rawValue].key)
    }

    /// Reads cache bytes; members only (`isMember`), usable addresses only.
    mutating func loadCache(_ bytes: [UInt8], isMember: (PublicKey) -> Bool) -> Bool {
        guard let loaded = EndpointCache(bytes: bytes) else { return false }
        for (key, eps) in loaded.entries where isMember(key) {
            for ep in eps.reversed() where PathManager.isUsableRemote(ep) { cache.record(ep, for: key) }
        }
        return true
    }
}
