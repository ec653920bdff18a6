// The timer hooks of "an authenticated packet was received / sent" (wireguard-go
// `timers.go`: timersDataReceived, timersAnyAuthenticatedPacketReceived, ...),
// written once. Two callers reach them:
//
//   not sharded:  PeerSession.receiveData / afterSend ─────────────┐
//   (unit tests)  (per packet)                                     ├─▶ received(data:) / sent(data:)
//   the engine:   SessionShard opens and seals, reports activity ──┘
//                 PeerSession.applyActivity (per report, ≤ every 20 ms)
//
// so the session's timers end the same whichever reactor touched the keys.
//
//   any auth packet received -> cancel newHandshake, re-arm persistentKeepalive
//   data received            -> arm keepalive (KEEPALIVE) if unarmed, else "need another"
//   received, as initiator, keys older than REKEY_AFTER_TIME - KEEPALIVE - REKEY_TIMEOUT
//                            -> want a handshake, once per keypair (keepKeyFreshReceiving)
//   data sent                -> arm newHandshake (KEEPALIVE + REKEY_TIMEOUT + jitter) if unarmed
//   any auth packet sent     -> cancel keepalive, re-arm persistentKeepalive

import Support

extension PeerSession {
    /// One or more authenticated packets arrived under this peer's keys;
    /// `data`: at least one carried a payload (not only keepalives).
    mutating func received(data: Bool, now: Instant, ctx: inout SessionContext) {
        let t = ctx.timings
        timers[.newHandshake] = nil
        traversal(now: now)
        if data {
            if timers.isPending(.keepalive) { needAnotherKeepalive = true } else { timers[.keepalive] = now + t.keepaliveTimeout }
        }
        // keepKeyFreshReceiving: an initiator that only listens still rekeys in time.
        if !sentLastMinuteHandshake, keys.current?.isInitiator == true, let created = keys.current?.createdAt,
           now - created >= t.rekeyOnReceiveAge {
            sentLastMinuteHandshake = true
            wantHandshake(now: now, ctx: &ctx)
        }
    }

    /// One or more authenticated packets left under this peer's keys; `data`:
    /// at least one carried a payload that expects an answer (a path probe
    /// does not: it must not make the session re-handshake).
    mutating func sent(data: Bool, now: Instant, ctx: inout SessionContext) {
        if data, !timers.isPending(.newHandshake) {
            timers[.newHandshake] = now + ctx.timings.newHandshakeTimeout
                + retryJitter(max: ctx.timings.rekeyTimeoutJitterMax, using: &ctx.rng)
        }
        timers[.keepalive] = nil
        traversal(now: now)
    }
}
