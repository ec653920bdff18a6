// How the daemon is made from its config: the roster and routes, NodeCore with
// its timings, and one session shard per lane (also with one lane).
import Support
import Wire
import Crypto
import Protocol
import Config
import Foundation

extension Daemon {
    /// The config's peers as roster entries, and their routes by peer index.
    static func members(of config: Config) throws -> ([MemberSpec], [(CIDR, Int)]) {
        var members: [MemberSpec] = []
        var routeList: [(CIDR, Int)] = []
        for (i, p) in config.peers.enumerated() {
            guard let key = PublicKey(base64: p.publicKey) else { throw DaemonError("peer[\(i)].public_key: not a valid key") }
            var kind = MemberKind.whalescale
            if p.wireGuard {
                // A stock WireGuard peer: its key is X25519 (`wg pubkey`), its psk optional.
                var psk: PresharedKey?
                if let text = try config.loadPresharedKey(peer: i) {
                    guard let k = PresharedKey(base64: text) else { throw DaemonError("peer[\(i)].preshared_key_file: not a key") }
                    psk = k
                }
                kind = .wireGuard(psk: psk)
            }
            members.append(MemberSpec(publicKey: key, name: p.name, endpoint: p.endpoint, isAnchor: p.anchor,
                                      persistentKeepalive: p.persistentKeepalive, kind: kind))
            for c in p.addresses { routeList.append((c, i)) }
        }
        return (members, routeList)
    }

    static func makeCore(identity: Identity, members: [MemberSpec], config: Config, owners: Int) -> NodeCore {
        // Several reactors seal under one keypair: an atomic counter. One reactor
        // (NodeCore and the one shard on one thread): a plain one suffices.
        let counters: SendCounterFactory
        if owners > 1 { counters = { AtomicSendCounter() } } else { counters = { LocalSendCounter() } }
        return NodeCore(identity: identity, members: members, isAnchor: config.node.anchor,
                 timings: ConnectivityTimings.default.withRelayRate(mbit: config.node.relayRateMbit),
                 sessionTimings: sessionTimings(), gossipTimings: gossipTimings(config), owners: owners, sharded: true,
                 sendCounters: counters, cipher: config.node.cipher)
    }

    /// The whitepaper's session timers; tests only: `WS_TEST_REKEY_AFTER_S=N`
    /// (N ≥ 2) shortens REKEY_AFTER_TIME to N s (REJECT_AFTER_TIME 2N + 15 s,
    /// REKEY_ATTEMPT_TIME N s, keeping their order) so a lab script sees a rekey
    /// in seconds (tests/wgcompat.sh). Never set it in production.
    static func sessionTimings() -> SessionTimings {
        guard let v = ProcessInfo.processInfo.environment["WS_TEST_REKEY_AFTER_S"], let n = UInt64(v), n >= 2 else {
            return .default
        }
        var t = SessionTimings.default
        t.rekeyAfterTime = .seconds(n)
        t.rejectAfterTime = .seconds(2 * n + 15)
        t.rekeyAttemptTime = .seconds(n)
        return t
    }

    /// The gossip constants with `[gossip] anti_entropy_s`.
    static func gossipTimings(_ config: Config) -> GossipTimings {
        var t = GossipTimings.default
        t.antiEntropy = .seconds(UInt64(config.gossip.antiEntropySeconds))
        return t
    }

    /// One shard per lane, also with one lane (N = 1: one shard owns every session).
    func splitSessions(across n: Int) {
        let router = LaneRouter(lanes: n, isAnchor: config.node.anchor)
        shardSync = ShardSync(router: router, peers: members.count)
        // An anchor's lanes all forward RELAY and take from one budget per member.
        var budget: (any SharedRelayBudget)?
        if config.node.anchor {
            if n > 1 {
                budget = AtomicRelayBudget(members: members.count, rule: core.relayBudgetRule)
            } else {
                budget = LocalRelayBudget(members: members.count, rule: core.relayBudgetRule)
            }
        }
        for lane in lanes {
            lane.owners = n
            lane.router = router
            lane.shard = SessionShard(index: lane.id, owners: n, roster: core.roster, isAnchor: config.node.anchor,
                                      relayBudget: budget, relayRule: core.relayBudgetRule)
            lane.reorder = SessionReorder(peers: members.count)
        }
    }
}
