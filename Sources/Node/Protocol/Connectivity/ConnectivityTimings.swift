// Connectivity constants: anchors, address observation, hole punching, relay,
// recovery. Each value: its unit and why it is what it is. `.default` is the
// specification; tests may pass other values (the fields are the "values
// tests may override" group of STYLE 6; there are no protocol-fixed values
// here: both ends of a path never need to agree on any of these).

import Support
import Wire
import Crypto

public struct ConnectivityTimings: Sendable, Equatable {
    // MARK: Anchors

    /// Anchor keepalive, 20 s: every node pings every anchor (a PATH_PING in
    /// the session: a keepalive that is answered) this often. Home NATs drop
    /// idle UDP mappings after as little as 30 s; 20 s keeps them open with
    /// margin, and keeps each anchor's view of our endpoint current (the
    /// authenticated ping moves it after a renumbering). Anchors do the same to
    /// each other: mutual keepalive.
    public var anchorKeepalive: Span
    /// Address probe interval, 7 s: PATH_PROBE to every anchor. A renumbered NAT
    /// is only visible from outside, so this bounds how long a renumbering goes
    /// unnoticed; the heal budget is 10 s (detection ≤ 7 s + jitter + one RTT,
    /// then keepalives cross in one more), and a probe is 64 bytes.
    public var addressProbeInterval: Span
    /// Random delay subtracted from each probe interval, up to 500 ms, so that
    /// nodes started together do not probe in lockstep.
    public var addressProbeJitter: Span
    /// A probe (or anchor ping) unanswered after 1 s counts as missed: anchors
    /// are public hosts, RTTs far below this.
    public var probeTimeout: Span
    /// After a missed probe the next one goes this soon (1 s) instead of a
    /// full interval: "probe at once when a path looks dead".
    public var probeRetry: Span
    /// Consecutive missed probes (3) or anchor pings (2) that make an anchor
    /// unreachable: one lost datagram is not an outage.
    public var anchorMissedProbes: Int
    public var anchorMissedPings: Int
    /// No warning about anchors during the first 10 s: sessions are still coming up.
    public var warningGrace: Span

    // MARK: Paths

    /// Hole punching: after a RENDEZVOUS, both sides ping all of the other's
    /// candidates for 5 s ("a few seconds"), in rounds 100 ms, 200 ms, 400 ms,
    /// ... apart, at most 1 s: the first rounds open both NATs' mappings, the
    /// later ones pass once the other side's mapping exists.
    public var punchDuration: Span
    public var punchFirstRound: Span
    public var punchMaxRound: Span
    /// A RENDEZVOUS_REQUEST unanswered for 2 s: ask the next anchor.
    public var rendezvousTimeout: Span
    /// An anchor holds a rendezvous request for a member it has no session
    /// with yet this long (30 s), and introduces the pair the moment that
    /// member's session comes up: a member that starts late (the laptop
    /// opened after the others) is reached at once, not at the requester's
    /// next handshake retry (5, 10, 20 s apart). RelayService.swift (held introductions).
    public var introductionHold: Span
    /// A relayed peer retries direct paths (a new rendezvous) 10 s after a punch
    /// failed, doubling to at most 120 s, for as long as traffic flows: NATs
    /// change (a mapping policy, a port mapping added) and the relay costs the
    /// anchor bandwidth (seed 3.7).
    public var directRetryInitial: Span
    public var directRetryMax: Span
    /// A relayed peer whose session carried no data for 120 s is not retried
    /// until traffic resumes (no radio wake-ups for an idle pair).
    public var directRetryIdle: Span
    /// Data sent on the active direct path and nothing heard on it for 3 s:
    /// ping it. Three pings missed (each 1 s): the path is dead, fall back.
    public var pathQuiet: Span
    public var pathMissedPings: Int
    /// A validated path stays eligible this long (30 s) after its last answer:
    /// about the life of an idle NAT mapping.
    public var pathValidFor: Span
    /// Same-class hysteresis: switch to another path of the same kind only if
    /// its RTT is below 80% of the active one's and at least 5 ms better.
    public var rttSwitchRatio: Double
    public var rttSwitchMinimum: Span
    /// Spread a member's data over every usable path that answers (two or more:
    /// `NodeCore.dataRoute`, docs/multipath.md). Off: one active path, as before.
    public var multipath = true
    /// Whether a relayed path may join a spread beside a direct or LAN one.
    /// Off (the default): a spread holds paths of the active path's class only,
    /// relayed or not, so an anchor carries a pair's data only while the pair
    /// has no direct path (two anchors' relays may still share a flow). On: every
    /// usable path, relays included. Measured with it on (perf/relay, session 7):
    /// a direct pair 0.2 ms apart that sent half its TCP through an anchor 0.9 ms
    /// away fell from about 4 to 0.9 Gbit/s with retransmits, and its anchor
    /// forwarded half of the pair's UDP.
    public var multipathRelay = false
    /// Multipath: every path of a spread that the latency rule lets carry data is pinged
    /// this often while data flows: the scheduler's saturation rule and a far path's cap
    /// follow the queue in each RTT sample. A ping on a path costs the receiver no more
    /// waiting than a data packet on it.
    public var farProbe: Span = .milliseconds(100)
    /// Multipath: a direct or LAN path of a member that never answered here (down when
    /// the session began, or not yet reachable) gets a check ping this often while data
    /// flows, so it joins the spread once it answers.
    public var candidateRetry: Span = .seconds(5 as UInt64)
    /// Multipath: a path that carries the peer's traffic is not pinged while it does,
    /// except once its last RTT sample is this old (its delay may have changed).
    public var rttStale: Span = .seconds(10 as UInt64)

    // MARK: Relay and rate limits

    /// Relay budget per sending member, bytes/s (0: no limit), and its burst.
    /// The default, 10 Gbit/s with a 20 ms burst, is a ceiling on one member,
    /// not a shaper: a policer that bites drops TCP segments, and a relayed
    /// transfer then runs at a fraction of the budget (perf/relay measured
    /// 0.93 Gbit/s with 90,000 retransmits under a 1 Gbit/s budget). An
    /// anchor whose uplink is smaller sets `node.relay_rate_mbit` below it so
    /// that one member cannot take all of it (`withRelayRate`). Members are
    /// authenticated devices of one group: this is fairness between them,
    /// not a defence against strangers (those never get here).
    public var relayBytesPerSecond: UInt64
    public var relayBurstBytes: UInt64
    /// Probe replies per source address (IPv6: per /64): 10/s, burst 20 (a
    /// household of members behind one address probing every 7 s, plus
    /// recovery bursts). The table of addresses is fixed
    /// (HandshakeRateLimiter.maxEntries) and evicts the least recently used.
    public var probeRepliesPerSecond: Int
    public var probeReplyBurst: Int
    /// Probe replies in all, to sources that are not a member's known
    /// endpoint: 1,000/s, burst 1,000. Members probe each anchor every 7 s, so
    /// this serves about 7,000 members' routine probes; it caps what a flood
    /// from many sources (one IPv6 /48 is 65,536 budgets) costs us and sends,
    /// while probes from where a member is known to be bypass it (review H2).
    public var probeRepliesTotalPerSecond: Int
    public var probeRepliesTotalBurst: Int
    /// Rendezvous requests an anchor serves per member: 2/s, burst 5.
    public var rendezvousPerSecond: Int
    public var rendezvousBurst: Int
    /// CANDIDATES messages a node accepts per member: 1/s, burst 5. A member
    /// announces when its addresses change (a renumbering, a new anchor
    /// session): rarely; more is churn in what anchors hand out (review M8).
    public var candidateUpdatesPerSecond: Int
    public var candidateUpdateBurst: Int
    /// Hole punching to addresses no one vouched for (a member's own claims,
    /// neither an anchor's observation, nor heard from, nor cached or
    /// configured): at most 8 distinct such addresses per member per 30 s,
    /// however many RENDEZVOUS arrive. 8 covers a host's locals, port
    /// mappings and other anchors' observations; 30 s spans a punch (5 s) and
    /// the first direct retry (10 s). Without it one RENDEZVOUS_REQUEST made
    /// each introduced member ping 16 attacker-chosen addresses ~9 times each
    /// (review M8: 100-150x amplification toward hosts outside the mesh).
    public var unattestedPunchTargets: Int
    public var unattestedPunchWindow: Span

    // MARK: Recovery (seed 3.1, 3.5)

    /// After losing every path: attempts 1 s, 2 s, 4 s, ... apart, at most
    /// 60 s, each ±10% jitter; anchors first, cached endpoints from the second
    /// attempt on (an anchor answers a single probe with high probability).
    public var recoveryInitial: Span
    public var recoveryMax: Span
    public var recoveryJitterPercent: UInt64
    /// Attempts without any answer after which the node reports itself
    /// partitioned (8: 1+2+4+...+60+60 s ≈ 3 min, the backoff has reached its
    /// cap and every anchor and cached endpoint was tried several times).
    public var recoveryPartitionAfter: Int

    public init(
        anchorKeepalive: Span = .seconds(20 as UInt64),
        addressProbeInterval: Span = .seconds(7 as UInt64),
        addressProbeJitter: Span = .milliseconds(500),
        probeTimeout: Span = .seconds(1 as UInt64),
        probeRetry: Span = .seconds(1 as UInt64),
        anchorMissedProbes: Int = 3,
        anchorMissedPings: Int = 3,
        warningGrace: Span = .seconds(10 as UInt64),
        punchDuration: Span = .seconds(5 as UInt64),
        punchFirstRound: Span = .milliseconds(100),
        punchMaxRound: Span = .seconds(1 as UInt64),
        rendezvousTimeout: Span = .seconds(2 as UInt64),
        introductionHold: Span = .seconds(30 as UInt64),
        directRetryInitial: Span = .seconds(10 as UInt64),
        directRetryMax: Span = .seconds(120 as UInt64),
        directRetryIdle: Span = .seconds(120 as UInt64),
        pathQuiet: Span = .seconds(3 as UInt64),
        pathMissedPings: Int = 3,
        pathValidFor: Span = .seconds(30 as UInt64),
        rttSwitchRatio: Double = 0.8,
        rttSwitchMinimum: Span = .milliseconds(5),
        relayBytesPerSecond: UInt64 = ConnectivityTimings.relayBudget(mbit: ConnectivityTimings.defaultRelayRateMbit).bytesPerSecond,
        relayBurstBytes: UInt64 = ConnectivityTimings.relayBudget(mbit: ConnectivityTimings.defaultRelayRateMbit).burst,
        probeRepliesPerSecond: Int = 10,
        probeReplyBurst: Int = 20,
        rendezvousPerSecond: Int = 2,
        rendezvousBurst: Int = 5,
        probeRepliesTotalPerSecond: Int = 1000,
        probeRepliesTotalBurst: Int = 1000,
        candidateUpdatesPerSecond: Int = 1,
        candidateUpdateBurst: Int = 5,
        unattestedPunchTargets: Int = 8,
        unattestedPunchWindow: Span = .seconds(30 as UInt64),
        recoveryInitial: Span = .seconds(1 as UInt64),
        recoveryMax: Span = .seconds(60 as UInt64),
        recoveryJitterPercent: UInt64 = 10,
        recoveryPartitionAfter: Int = 8
    ) {
        self.anchorKeepalive = anchorKeepalive
        self.addressProbeInterval = addressProbeInterval
        self.addressProbeJitter = addressProbeJitter
        self.probeTimeout = probeTimeout
        self.probeRetry = probeRetry
        self.anchorMissedProbes = anchorMissedProbes
        self.anchorMissedPings = anchorMissedPings
        self.warningGrace = warningGrace
        self.punchDuration = punchDuration
        self.punchFirstRound = punchFirstRound
        self.punchMaxRound = punchMaxRound
        self.rendezvousTimeout = rendezvousTimeout
        self.introductionHold = introductionHold
        self.directRetryInitial = directRetryInitial
        self.directRetryMax = directRetryMax
        self.directRetryIdle = directRetryIdle
        self.pathQuiet = pathQuiet
        self.pathMissedPings = pathMissedPings
        self.pathValidFor = pathValidFor
        self.rttSwitchRatio = rttSwitchRatio
        self.rttSwitchMinimum = rttSwitchMinimum
        self.relayBytesPerSecond = relayBytesPerSecond
        self.relayBurstBytes = relayBurstBytes
        self.probeRepliesPerSecond = probeRepliesPerSecond
        self.probeReplyBurst = probeReplyBurst
        self.rendezvousPerSecond = rendezvousPerSecond
        self.rendezvousBurst = rendezvousBurst
        self.probeRepliesTotalPerSecond = probeRepliesTotalPerSecond
        self.probeRepliesTotalBurst = probeRepliesTotalBurst
        self.candidateUpdatesPerSecond = candidateUpdatesPerSecond
        self.candidateUpdateBurst = candidateUpdateBurst
        self.unattestedPunchTargets = unattestedPunchTargets
        self.unattestedPunchWindow = unattestedPunchWindow
        self.recoveryInitial = recoveryInitial
        self.recoveryMax = recoveryMax
        self.recoveryJitterPercent = recoveryJitterPercent
        self.recoveryPartitionAfter = recoveryPartitionAfter
    }

    public static let `default` = ConnectivityTimings()

    /// The default relay budget, 10 Gbit/s per member (`node.relay_rate_mbit`).
    public static let defaultRelayRateMbit = 10_000

    /// A relay budget of `mbit` Mbit/s: bytes per second, and a burst of 20 ms
    /// of it but at least 1 MiB (a few TSO runs). 0 Mbit/s means no limit.
    public static func relayBudget(mbit: Int) -> (bytesPerSecond: UInt64, burst: UInt64) {
        let rate = UInt64(max(0, mbit)) * 125_000
        return (rate, max(1 << 20, rate / 50))
    }

    /// These timings with the relay budget of `node.relay_rate_mbit`.
    public func withRelayRate(mbit: Int) -> ConnectivityTimings {
        var t = self
        (t.relayBytesPerSecond, t.relayBurstBytes) = Self.relayBudget(mbit: mbit)
        return t
    }
}
